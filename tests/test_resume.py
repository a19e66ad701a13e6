"""Not losing work: resumable training, atomic checkpoints, checkpoints refused by the wrong run."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from recbole_tasrec import cli
from recbole_tasrec.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    check_identity,
    load_trusted,
    run_identity,
)
from recbole_tasrec.config import Config
from recbole_tasrec.data.atomic import atomic_path
from recbole_tasrec.data.synthetic import write as write_data
from recbole_tasrec.quick_start import evaluate_checkpoint, load_data_and_model, prepare_data, run_recbole_tasrec
from recbole_tasrec.resume import RESUME_SUFFIX, find_resume_file, resume_file_for

from .conftest import TINY, TinySplit, small_settings


class Interrupted(RuntimeError):
    """Raised on purpose by an epoch callback, as a crash or a Ctrl+C would stop a run."""


def interrupt_after(epoch: int):
    def callback(epoch_idx: int, _valid_result: dict[str, float]) -> None:
        if epoch_idx == epoch:
            raise Interrupted(f"stopped after epoch {epoch_idx}")

    return callback


def only_checkpoint(run_dir: Path) -> Path:
    (checkpoint,) = (run_dir / "saved").glob("*.pth")
    return checkpoint


def last_weights(checkpoint: Path | str) -> dict[str, torch.Tensor]:
    return load_trusted(resume_file_for(checkpoint))["state_dict"]


def flat(state: Any, prefix: str = "") -> dict[str, Any]:
    """A state dict's tensors by dotted name (TASRec's extra state nests dicts of tensors)."""
    if isinstance(state, dict):
        return {key: value for name in state for key, value in flat(state[name], f"{prefix}{name}.").items()}
    return {prefix.rstrip("."): state}


def assert_same_weights(left: dict[str, Any], right: dict[str, Any]) -> None:
    left, right = flat(left), flat(right)
    assert left.keys() == right.keys()
    different = [name for name in left if not _equal(left[name], right[name])]
    assert different == []


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, torch.Tensor):
        return torch.equal(left, right)
    return bool(np.array_equal(left, right)) if isinstance(left, np.ndarray) else left == right


# --- resuming -------------------------------------------------------------------------------------------------
THREE_EPOCHS = {"epochs": 3, "train_batch_size": 256, "topk": [10, 20]}


@pytest.fixture(scope="module")
def runs(data_dir: Path, tiny_split: Callable[..., TinySplit], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny set: an uninterrupted 3-epoch run, and one interrupted after its first epoch."""
    base = tmp_path_factory.mktemp("resume")
    settings = {name: small_settings(data_dir, base / name, **THREE_EPOCHS) for name in ("full", "cut")}
    prepared = tiny_split(**THREE_EPOCHS).data
    full = run_recbole_tasrec("TASRec", "tiny", config_dict=settings["full"], prepared=prepared)
    with pytest.raises(Interrupted):
        run_recbole_tasrec(
            "TASRec", "tiny", config_dict=settings["cut"], prepared=prepared, epoch_callback=interrupt_after(0)
        )
    return {"settings": settings, "prepared": prepared, "full": full, "cut": only_checkpoint(base / "cut")}


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(runs: dict[str, Any]) -> None:
    cut = runs["cut"]
    state = load_trusted(resume_file_for(cut))
    assert state["epoch"] == 0 and list(state["train_loss_dict"]) == [0]
    assert list((cut.parent).glob(".*.part")) == []  # nothing half-written left behind

    resumed = run_recbole_tasrec(
        "TASRec", "tiny", config_dict=runs["settings"]["cut"], prepared=runs["prepared"], resume=cut
    )
    full = runs["full"]
    assert resumed["checkpoint"] == str(cut)  # the resumed run keeps writing the same checkpoint
    assert resumed["train_loss"] == full["train_loss"]
    assert resumed["best_valid_result"] == full["best_valid_result"]
    assert resumed["test_result"] == full["test_result"]
    assert_same_weights(last_weights(cut), last_weights(full["checkpoint"]))
    assert_same_weights(load_trusted(cut)["state_dict"], load_trusted(full["checkpoint"])["state_dict"])


def test_resuming_a_finished_run_trains_nothing_and_keeps_its_best_model(runs: dict[str, Any]) -> None:
    full = runs["full"]
    best_before = load_trusted(full["checkpoint"])["state_dict"]
    again = run_recbole_tasrec(
        "TASRec", "tiny", config_dict=runs["settings"]["full"], prepared=runs["prepared"], resume=full["checkpoint"]
    )
    assert again["train_loss"] == full["train_loss"] and again["test_result"] == full["test_result"]
    assert_same_weights(load_trusted(full["checkpoint"])["state_dict"], best_before)


def test_the_resume_state_holds_the_whole_training_state(data_dir: Path, tmp_path: Path) -> None:
    settings = small_settings(data_dir, tmp_path, epochs=2, eval_step=2, train_batch_size=256)  # epoch 0: no eval
    with pytest.raises(Interrupted):
        run_recbole_tasrec("TASRec", "tiny", config_dict=settings, epoch_callback=interrupt_after(1))
    (resume_file,) = (tmp_path / "saved").glob(f"*{RESUME_SUFFIX}")
    state = load_trusted(resume_file)
    assert state["epoch"] == 1 and sorted(state["train_loss_dict"]) == [0, 1]
    assert state["optimizer"]["param_groups"][0]["lr"] > 0
    assert state["cur_step"] == 0 and state["best_valid_result"]  # epoch 1 was evaluated and improved
    assert {"python", "numpy", "torch", "loader"} <= state["rng"].keys()
    assert state["identity"]["model"] == "TASRec" and state["identity"]["n_items"] > 1


def test_resume_needs_a_resume_state(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--resume takes the checkpoint"):
        find_resume_file(tmp_path / "nothing.pth")


def test_cli_refuses_a_missing_resume_state(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["--dataset", "tiny", f"--data_path={data_dir}", f"--run_dir={tmp_path}", "--resume", "gone.pth"]
    assert cli.main(args) == 2
    assert "no resume state at gone.pth.resume" in capsys.readouterr().err


def test_cli_refuses_a_file_that_is_no_resume_state(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "bad.pth.resume").write_text("not a checkpoint\n")
    args = ["--dataset", "tiny", f"--data_path={data_dir}", f"--run_dir={tmp_path}", "--resume"]
    assert cli.main([*args, str(tmp_path / "bad.pth")]) == 2
    assert "bad.pth.resume is not a readable checkpoint" in capsys.readouterr().err


def test_a_truncated_or_wrong_kind_of_checkpoint_is_refused(tiny_run: dict[str, Any], tmp_path: Path) -> None:
    whole = Path(tiny_run["checkpoint"]).read_bytes()
    (tmp_path / "cut.pth").write_bytes(whole[: len(whole) // 2])  # a copy interrupted half-way
    with pytest.raises(CheckpointError, match="cut.pth is not a readable checkpoint"):
        load_trusted(tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match=r"lacks \['rng'\]"):  # the best model is no resume state
        load_trusted(tiny_run["checkpoint"], required=("identity", "epoch", "rng"))


def test_resume_refuses_several_processes(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one-process runs only"):
        run_recbole_tasrec("TASRec", "tiny", config_dict={**small_settings(data_dir, tmp_path), "nproc": 2}, resume="x")


# --- atomic writes ----------------------------------------------------------------------------------------------
def test_a_failed_write_leaves_the_previous_file_and_no_partial_one(tmp_path: Path) -> None:
    target = tmp_path / "model.pth"
    target.write_text("previous")
    with pytest.raises(OSError, match="disk full"), atomic_path(target) as partial:
        Path(partial).write_text("half")
        raise OSError("disk full")
    assert target.read_text() == "previous" and sorted(p.name for p in tmp_path.iterdir()) == ["model.pth"]
    with atomic_path(target) as partial:
        Path(partial).write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["model.pth"]


# --- the wrong checkpoint ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One epoch of TASRec on a private copy of the tiny data set (a test edits its items)."""
    root = tmp_path_factory.mktemp("own-data")
    write_data(TINY, root, "tiny")
    settings = small_settings(root, root / "run")
    result = run_recbole_tasrec("TASRec", "tiny", config_dict=settings)
    return {"root": root, "settings": settings, "checkpoint": result["checkpoint"]}


def test_a_checkpoint_of_another_model_is_refused(tiny_run: dict[str, Any]) -> None:
    config = Config("GRU4Rec", "tiny", config_dict=tiny_run["settings"])
    with pytest.raises(CheckpointMismatchError, match="model: the run has 'GRU4Rec', the checkpoint 'TASRec'"):
        evaluate_checkpoint(config, prepare_data(config), tiny_run["checkpoint"])


def test_a_checkpoint_of_other_data_set_settings_is_refused(tiny_run: dict[str, Any]) -> None:
    config = Config("TASRec", "tiny", config_dict={**tiny_run["settings"], "min_session_length": 3})
    with pytest.raises(CheckpointMismatchError, match="data set key min_session_length: the run has 3"):
        evaluate_checkpoint(config, prepare_data(config), tiny_run["checkpoint"])


def test_a_resume_of_another_data_set_is_refused(tiny_run: dict[str, Any]) -> None:
    write_data(TINY, tiny_run["root"], "other")
    settings = {**tiny_run["settings"], "run_dir": str(tiny_run["root"] / "other-run")}
    with pytest.raises(CheckpointMismatchError, match="dataset: the run has 'other', the checkpoint 'tiny'"):
        run_recbole_tasrec("TASRec", "other", config_dict=settings, resume=tiny_run["checkpoint"])


def test_a_checkpoint_whose_data_now_maps_other_items_is_refused(tiny_run: dict[str, Any]) -> None:
    inter = tiny_run["root"] / "tiny" / "tiny.inter"
    lines = inter.read_text().splitlines()
    renamed = [lines[0]] + [f"{s}\tx{i}\t{t}" for s, i, t in (line.split("\t") for line in lines[1:])]
    inter.write_text("\n".join(renamed) + "\n")  # the same clicks, other item tokens
    with pytest.raises(CheckpointMismatchError, match="item mapping"):
        load_data_and_model(tiny_run["checkpoint"])


def test_identity_check_names_every_difference() -> None:
    ours = {"model": "TASRec", "dataset": "a", "n_items": 10, "dataset_config": {"day_span": 1, "seq_len": None}}
    theirs = {**ours, "dataset": "b", "n_items": 11, "dataset_config": {"day_span": 2, "seq_len": None}}
    with pytest.raises(CheckpointMismatchError) as error:
        check_identity(ours, theirs, "c.pth")
    message = str(error.value)
    assert "c.pth" in message and "dataset:" in message and "n_items" in message and "day_span" in message
    assert "model:" not in message and "seq_len" not in message
    check_identity(ours, {"model": "TASRec"}, "old.pth")  # an older checkpoint: only what it stores is compared


def test_identity_of_a_config_lists_the_data_set_keys(data_dir: Path, tmp_path: Path) -> None:
    identity = run_identity(Config("TASRec", "tiny", config_dict=small_settings(data_dir, tmp_path)))
    assert identity["dataset_config"]["day_span"] == 1 and "item_digest" not in identity


# --- Ray Tune trials ----------------------------------------------------------------------------------------------
class FakeTune:
    """What a trial calls of ``ray.tune``, without Ray: reports are recorded, their checkpoints kept (as Tune's
    storage does) and, with ``fail_at``, the trial dies at that report, as a lost worker would."""

    Checkpoint = None  # set in __init__: Ray's own class (no running Ray needed)

    def __init__(self, store: Path, checkpoint: Any = None, fail_at: int | None = None) -> None:
        from ray import tune

        self.Checkpoint, self.store, self.checkpoint, self.fail_at = tune.Checkpoint, store, checkpoint, fail_at
        store.mkdir(exist_ok=True)
        self.reports: list[dict[str, float]] = []

    def get_context(self) -> Any:
        return SimpleNamespace(get_trial_id=lambda: "00000_00001")

    def get_checkpoint(self) -> Any:
        return self.checkpoint

    def report(self, metrics: dict[str, float], checkpoint: Any = None) -> None:
        self.reports.append(metrics)
        if checkpoint is not None:
            kept = self.store / f"checkpoint_{len(list(self.store.iterdir())):06d}"
            shutil.copytree(checkpoint.path, kept)
            self.checkpoint = self.Checkpoint.from_directory(kept)
        if len(self.reports) == self.fail_at:
            raise Interrupted("the worker died")


@pytest.mark.slow  # three 3-epoch trials (about 15 s on 2 cores)
def test_a_restored_trial_continues_from_its_last_checkpoint(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recbole_tasrec.tune import sweep
    from recbole_tasrec.tune.space import Param
    from recbole_tasrec.tune.spec import build_spec, driver_config

    space = {"embedding_size": Param("fixed", (8,)), "n_layers": Param("fixed", (1,))}
    settings = {"data_path": str(data_dir), "train_batch_size": 256, "seed": 7, "state": "WARNING"}
    spec, _ = build_spec("TASRec", "tiny", space, (), settings, 3)
    prepared = prepare_data(driver_config(spec.model, spec.dataset, spec.config_files, spec.settings))
    monkeypatch.setattr(sweep, "ray", SimpleNamespace(get_gpu_ids=lambda: []))

    def trial(name: str, fake: FakeTune) -> FakeTune:
        monkeypatch.setattr(sweep, "tune", fake)
        sweep._trial(
            {"embedding_size": 8, "n_layers": 1}, spec=spec, output_dir=str(tmp_path / name), prepared=prepared
        )
        return fake

    whole = trial("whole", FakeTune(tmp_path / "whole-store"))
    dying = FakeTune(tmp_path / "store", fail_at=1)
    with pytest.raises(Interrupted):
        trial("cut", dying)
    assert [report["epoch"] for report in dying.reports] == [1]
    restored = trial("cut", FakeTune(tmp_path / "store", checkpoint=dying.checkpoint))
    assert [report["epoch"] for report in restored.reports] == [2, 3, 3]  # epoch 1 is not trained again
    assert restored.reports == whole.reports[1:]  # every later report, the test metrics included


@pytest.mark.slow  # Ray: a sweep interrupted by Ctrl+C after its trial's first epoch, then resumed (about 60 s)
def test_a_resumed_sweep_continues_its_trial_after_the_last_reported_epoch(
    local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import os
    import signal

    from recbole_tasrec.data.synthetic import SyntheticConfig
    from recbole_tasrec.tune import sweep
    from recbole_tasrec.tune.space import Param
    from recbole_tasrec.tune.spec import SweepOptions, build_spec

    write_data(SyntheticConfig(n_items=150, sessions_per_day=30, n_days=8, seed=3), tmp_path, "tiny")
    space = {"embedding_size": Param("fixed", (8,)), "n_layers": Param("fixed", (1,))}
    settings = {"data_path": str(tmp_path), "train_batch_size": 64, "seed": 7, "state": "WARNING", "topk": [10, 20]}
    spec, _ = build_spec("TASRec", "tiny", space, (), settings, 3)
    out = tmp_path / "sweep"

    once = tmp_path / "interrupted"

    class CtrlCAfterEpoch1(sweep.TrialSummary):  # Tune saves it with the sweep: the resumed sweep has it too
        def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
            if not once.exists():  # the first checkpoint is epoch 1's
                once.touch()
                os.kill(os.getpid(), signal.SIGINT)  # Tune stops the sweep, as on a user's Ctrl+C

    with monkeypatch.context() as patched:
        patched.setattr(sweep, "TrialSummary", CtrlCAfterEpoch1)
        sweep.run_sweep(spec, out, SweepOptions(num_samples=1))
    (trial_dir,) = [path for path in out.iterdir() if path.is_dir() and path.name.startswith("trial")]
    assert [json.loads(line)["epoch"] for line in (trial_dir / "result.json").read_text().splitlines()] == [1]
    sweep.run_sweep(spec, out, SweepOptions(num_samples=1), resume=True)
    epochs = [json.loads(line)["epoch"] for line in (trial_dir / "result.json").read_text().splitlines()]
    assert epochs == [1, 2, 3, 3]  # epoch 1 once: the resumed trial went on from its checkpoint
    assert any("test/recall@20" in json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines())


def test_the_schedule_state_round_trips(data_dir: Path, tmp_path: Path) -> None:
    """Whichever schedule the trainer has (a torch scheduler, or the plateau schedule's counters)."""
    from recbole_tasrec.quick_start import build_model
    from recbole_tasrec.run_folder import init_logger
    from recbole_tasrec.trainer import SCHEDULE_COUNTERS, TASRecTrainer

    config = Config("TASRec", "tiny", config_dict=small_settings(data_dir, tmp_path, lr_decay_epochs=2))
    init_logger(config)  # as a run does: the trainer's tensorboard folder sits next to the run's log
    train = prepare_data(config).train
    trainer, fresh = (TASRecTrainer(config, build_model(config, train)) for _ in range(2))
    if getattr(trainer, "scheduler", None) is not None:
        for _ in range(3):
            trainer.optimizer.step()
            trainer.scheduler.step()
    for name in SCHEDULE_COUNTERS:
        if hasattr(trainer, name):
            setattr(trainer, name, 5)
    state = trainer.schedule_state()
    assert state  # something to keep
    fresh.load_schedule_state(state)
    assert fresh.schedule_state() == state
