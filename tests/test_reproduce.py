"""The comparison harness (``python -m recbole_tasrec.harness reproduce``): its report, its ranks, --resume,
--report-only, --protocol and what each model saw, the equal tuning of --tune-trials; and the schedule report
built on its results."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import torch

from recbole_tasrec.config import get_model
from recbole_tasrec.harness import reproduce as reproduce_module
from recbole_tasrec.harness import schedule_report
from recbole_tasrec.harness.__main__ import main as harness_command
from recbole_tasrec.harness.protocols import CONTINUAL_IMPLEMENTED, STREAMING, TRAINING
from recbole_tasrec.harness.protocols import WITH_VALIDATION as VALIDATION
from recbole_tasrec.harness.protocols import information_seen as seen
from recbole_tasrec.harness.sample_ranks import TestRankRecorder
from recbole_tasrec.model import CSRM, STAN, VSKNN, TASRec
from recbole_tasrec.settings import BY_KEY


@pytest.fixture(scope="module")
def reproduce() -> ModuleType:
    return reproduce_module


def harness_args(data_dir: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--dataset", "tiny", "--output-dir", str(tmp_path / "results"), f"--data_path={data_dir}",
        f"--run_dir={tmp_path / 'runs'}", "--epochs=1", "--embedding_size=16", "--hidden_size=16", "--n_layers=1",
        *extra,
    ]  # fmt: skip


def test_report_ranks_resume_and_report_only(
    reproduce: ModuleType, data_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    args = harness_args(data_dir, tmp_path, "--models", "TASRec,STAN", "--seeds", "1")
    summary = reproduce.main(args)
    results = tmp_path / "results"
    data = json.loads((results / "tiny.json").read_text())
    assert [(r["model"], r["seed"]) for r in data["runs"]] == [("TASRec", 1), ("STAN", 1)]
    for run in data["runs"]:  # the unrolled ranks give RecBole's own test Recall@20 (rounded to 4 places)
        assert run["recall@20_from_ranks"] == pytest.approx(run["test_result"]["recall@20"], abs=6e-5)
        assert run["settings"]["embedding_size"] == 16 and run["config"]["epochs"] == 1
    ranks = np.load(results / "tiny.ranks.npz")
    assert sorted(ranks.files) == ["STAN|1", "TASRec|1"] and (ranks["TASRec|1"] >= 1).all()
    assert summary["protocols"]["paper"]["versus"]["best_other"] == "STAN"
    report = (results / "tiny.md").read_text()
    assert (
        "| TASRec | 1 |" in report and "| STAN | 1 |" in report and "TASRec minus the best other model (STAN)" in report
    )
    assert (results / "tiny.png").stat().st_size > 0

    def no_training(*_args, **_kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(reproduce, "run_one", no_training)
    assert reproduce.main([*args, "--resume"])["protocols"] == summary["protocols"]
    (results / "tiny.md").unlink()
    reproduce.main(harness_args(data_dir, tmp_path, "--report-only"))
    assert "--models TASRec,STAN" in (results / "tiny.md").read_text()  # the command of the runs, not this one


def test_report_only_without_results_says_so(reproduce: ModuleType, data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no .*tiny.json to report on"):
        reproduce.main(harness_args(data_dir, tmp_path, "--report-only"))


def test_several_processes_are_refused_before_training(reproduce: ModuleType, data_dir: Path, tmp_path: Path) -> None:
    """The ranks are recorded in the harness's own process: --nproc would train and then have none."""
    with pytest.raises(SystemExit, match="one process: leave out --nproc"):
        reproduce.main(harness_args(data_dir, tmp_path, "--models", "SRGNN", "--seeds", "1", "--nproc=2"))


def test_bad_tune_trials_is_a_usage_error(reproduce: ModuleType, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        reproduce.parse_args(["--dataset", "tiny", "--tune-trials", "-1"])
    assert exit_info.value.code == 2 and "--tune-trials must be 0" in capsys.readouterr().err


def test_both_protocols_two_tables_paired_tests_and_what_each_model_saw(
    reproduce: ModuleType, data_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """``--protocol both``: every model under frozen and under streaming, each cell's ranks those its test phase
    scored; a table, a TASRec-against-the-best test and a table of what each model saw per protocol; streaming
    against frozen per model. A resumed ``both`` trains nothing again and mixes no cells."""
    args = harness_args(data_dir, tmp_path, "--models", "TASRec,STAN", "--seeds", "1", "--protocol", "both")
    summary = reproduce.main(args)
    results = tmp_path / "results"
    data = json.loads((results / "tiny.json").read_text())
    assert [(r["protocol"], r["model"]) for r in data["runs"]] == [
        ("frozen", "TASRec"), ("frozen", "STAN"), ("streaming", "TASRec"), ("streaming", "STAN")
    ]  # fmt: skip
    for run in data["runs"]:  # the recorded ranks give the run's own test Recall@20, continual training or not
        assert run["recall@20_from_ranks"] == pytest.approx(run["test_result"]["recall@20"], abs=6e-5)
    ranks = np.load(results / "tiny.ranks.npz")
    assert sorted(ranks.files) == ["STAN|1|frozen", "STAN|1|streaming", "TASRec|1|frozen", "TASRec|1|streaming"]
    assert not np.array_equal(ranks["STAN|1|frozen"], ranks["STAN|1|streaming"])  # the index did change
    weights = STREAMING if CONTINUAL_IMPLEMENTED else TRAINING
    frozen, streaming = summary["protocols"]["frozen"], summary["protocols"]["streaming"]
    assert frozen["information_seen"] == {"TASRec": {"weights": TRAINING, "graph": VALIDATION},
                                          "STAN": {"index": TRAINING}}  # fmt: skip
    assert streaming["information_seen"] == {"TASRec": {"weights": weights, "graph": STREAMING},
                                             "STAN": {"index": STREAMING}}  # fmt: skip
    assert frozen["versus"]["best_other"] == streaming["versus"]["best_other"] == "STAN"
    between = summary["between_protocols"]
    assert (between["minuend"], between["subtrahend"], list(between["models"])) == (
        "streaming",
        "frozen",
        ["TASRec", "STAN"],
    )
    stan = between["models"]["STAN"]["recall@20"]
    expected = np.mean((ranks["STAN|1|streaming"] <= 20) * 1.0 - (ranks["STAN|1|frozen"] <= 20))
    assert stan["difference"] == pytest.approx(expected) and 0 <= stan["p_value"] <= 1
    report = (results / "tiny.md").read_text()
    assert "## Protocol frozen" in report and "## Protocol streaming" in report
    assert "## streaming minus frozen, per test sample, seed-averaged, paired t-test" in report
    assert "- **frozen** (`continual: off`, `temporal_eval: frozen`, `knn_streaming: False`" in report
    assert (
        f"| TASRec | {TRAINING} | {VALIDATION} | - | - |" in report and f"| STAN | - | - | {STREAMING} | - |" in report
    )
    assert report.count("TASRec minus the best other model (STAN)") == 2

    def no_training(*_args, **_kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(reproduce, "run_one", no_training)
    again = reproduce.main([*args, "--resume"])
    assert again["between_protocols"] == summary["between_protocols"]
    assert len(json.loads((results / "tiny.json").read_text())["runs"]) == 4


@pytest.mark.parametrize(
    ("model_class", "config", "expected"),
    [
        (TASRec, {}, {"weights": TRAINING, "graph": STREAMING}),  # the package's defaults
        (TASRec, {"continual": "off", "temporal_eval": "frozen"}, {"weights": TRAINING, "graph": VALIDATION}),
        (TASRec, {"continual": "refit", "temporal_eval": "frozen"}, {"weights": VALIDATION, "graph": VALIDATION}),
        (TASRec, {"continual": "daily", "temporal_eval": "streaming"}, {"weights": STREAMING, "graph": STREAMING}),
        (TASRec, {"continual": False, "use_temporal_graph": False}, {"weights": TRAINING}),  # YAML's bare off
        (STAN, {"knn_streaming": False, "continual": "daily"}, {"index": TRAINING}),  # a kNN model does not train
        (STAN, {"knn_streaming": True}, {"index": STREAMING}),
        (VSKNN, {}, {"index": STREAMING}),
        (CSRM, {"memory_eval": "frozen", "continual": "off"}, {"weights": TRAINING, "memory": TRAINING}),
        (CSRM, {"memory_eval": "frozen", "continual": "refit"}, {"weights": VALIDATION, "memory": VALIDATION}),
        (CSRM, {"memory_eval": "streaming", "continual": "off"}, {"weights": TRAINING, "memory": STREAMING}),
        (get_model("SRGNN"), {"continual": "daily", "knn_streaming": False}, {"weights": STREAMING}),
    ],
)  # fmt: skip
def test_information_seen_from_the_effective_settings(model_class: type, config: dict, expected: dict) -> None:
    assert seen(config, model_class, continual_implemented=True) == expected


def test_information_seen_without_continual_training_says_training_sessions() -> None:
    """A package without continual training keeps the key and ignores it: the weights saw the training only."""
    assert seen({"continual": "daily"}, TASRec, continual_implemented=False) == {
        "weights": TRAINING,
        "graph": STREAMING,
    }
    with pytest.raises(ValueError, match="continual must be one of off, refit, daily; got 'nightly'"):
        seen({"continual": "nightly"}, TASRec, continual_implemented=True)


def test_protocol_sets_the_keys_each_model_reads(reproduce: ModuleType) -> None:
    def keys(model: str, protocol: str, **overrides: object) -> dict:
        _, settings = reproduce.cell_settings(model, protocol, dict(overrides), seed=1)
        return {k: settings[k] for k in ("continual", "temporal_eval", "knn_streaming", "memory_eval") if k in settings}

    assert keys("TASRec", "frozen") == {"continual": "off", "temporal_eval": "frozen"}
    assert keys("TASRec-base", "streaming") == {"continual": "daily", "temporal_eval": "streaming"}
    assert keys("STAN", "frozen") == {"knn_streaming": False}
    assert keys("SKNN", "streaming") == {"knn_streaming": True}
    assert keys("CSRM", "frozen") == {"continual": "off", "memory_eval": "frozen"}
    assert keys("CSRM", "streaming") == {"continual": "daily", "memory_eval": "streaming"}
    assert keys("SRGNN", "streaming") == {"continual": "daily"}
    assert keys("SRGNN", "paper") == {"continual": "off"}
    assert keys("STAN", "frozen", knn_streaming=True) == {"knn_streaming": True}  # a --key=value wins
    _, settings = reproduce.cell_settings("TASRec-base", "frozen", {}, seed=2)
    assert settings["use_temporal_graph"] is False and settings["seed"] == 2


def test_cells_are_keyed_by_protocol(reproduce: ModuleType) -> None:
    """A resumed harness runs exactly the (protocol, model, seed) cells it has no ranks of: the frozen and the
    streaming results of a model never stand in for each other, and the paper protocol keeps the old keys."""
    done = {"STAN|1|frozen": np.ones(3), "STAN|1": np.ones(3), "TASRec|1|streaming": np.ones(3)}
    todo = reproduce.cells_to_run(["frozen", "streaming"], ["TASRec", "STAN"], 1, done)
    assert todo == [("frozen", "TASRec", 1), ("streaming", "STAN", 1)]
    assert reproduce.cells_to_run(["paper"], ["TASRec", "STAN"], 2, done) == [
        ("paper", "TASRec", 1), ("paper", "TASRec", 2), ("paper", "STAN", 2)
    ]  # fmt: skip
    assert [reproduce.cell_of(k) for k in done] == [
        ("frozen", "STAN", 1),
        ("paper", "STAN", 1),
        ("streaming", "TASRec", 1),
    ]


def test_recorded_ranks_follow_the_test_split_and_refuse_a_missing_sample() -> None:
    """Ranks by hand: ties count against the target, a validation session is ignored, a second scoring of a
    sample replaces the first, and the order is the test split's whatever order the batches came in."""
    config = {"USER_ID_FIELD": "session_id", "ITEM_ID_FIELD": "item_id", "ITEM_LIST_LENGTH_FIELD": "item_length",
              "LIST_SUFFIX": "_list"}  # fmt: skip

    def samples(sessions: list[int], targets: list[int]) -> dict[str, torch.Tensor]:
        return {"session_id": torch.tensor(sessions), "item_id": torch.tensor(targets),
                "item_length": torch.ones(len(sessions), dtype=torch.long),
                "item_id_list": torch.tensor([[1, 0]] * len(sessions))}  # fmt: skip

    test = samples([10, 11, 12], [2, 3, 1])
    recorder = TestRankRecorder(SimpleNamespace(inter_feat=test), config)
    scores = torch.tensor([[-torch.inf, 0.5, 0.9, 0.1], [-torch.inf, 0.5, 0.9, 0.1]])
    batch = samples([12, 99], [1, 2])  # a test sample and a validation one
    recorder.observe(batch, scores, torch.arange(2), batch["item_id"])
    with pytest.raises(RuntimeError, match="2 of the 3 test samples were not scored"):
        recorder.ranks()
    batch = samples([11, 10], [3, 2])
    recorder.observe(batch, scores, torch.arange(2), batch["item_id"])
    tie = torch.tensor([[-torch.inf, 0.9, 0.9, 0.1], [-torch.inf, 0.5, 0.9, 0.1]])
    recorder.observe(batch, tie, torch.arange(2), batch["item_id"])  # scored again: these ranks count
    assert recorder.ranks().tolist() == [1, 3, 2]  # session 10's item 2 ties with item 1 -> rank 2


@pytest.mark.slow
def test_tune_trials_choose_record_and_reuse_each_models_settings(
    local_ray: None, reproduce: ModuleType, data_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """Two Ray Tune trials of SRGNN over its search space (on the session's Ray, which the harness reuses); the
    best one's settings train the seed and are in the json and the report; a resumed harness with one more seed
    reuses them without tuning again."""
    args = harness_args(
        data_dir, tmp_path, "--models", "SRGNN", "--tune-trials", "2", "--tune-dir", str(tmp_path / "t")
    )
    reproduce.main([*args, "--seeds", "1"])
    data = json.loads((tmp_path / "results" / "tiny.json").read_text())
    tuning = data["tuning"]["SRGNN"]
    assert tuning["trials"] == 2 and set(tuning["settings"]) == {
        "embedding_size",
        "step",
        "learning_rate",
        "weight_decay",
    }
    assert (tmp_path / "t" / "SRGNN" / "results.csv").read_text().count("\n") == 3  # header + 2 trials
    run = data["runs"][0]
    assert {k: run["settings"][k] for k in tuning["settings"]} == tuning["settings"]
    assert run["config"]["embedding_size"] == tuning["settings"]["embedding_size"]
    assert "Equal tuning: 2 Ray Tune trials" in (tmp_path / "results" / "tiny.md").read_text()

    def no_tuning(*_args, **_kwargs):
        raise AssertionError("the model was tuned again")

    monkeypatch.setattr(reproduce, "tune_model", no_tuning)
    reproduce.main([*args, "--seeds", "2", "--resume"])
    runs = json.loads((tmp_path / "results" / "tiny.json").read_text())["runs"]
    assert [r["seed"] for r in runs] == [1, 2]
    assert runs[1]["settings"]["learning_rate"] == tuning["settings"]["learning_rate"]


def write_harness_result(results: Path, name: str, ranks: dict[str, np.ndarray], **config: object) -> None:
    """A harness result as the harness writes it, as far as the schedule report reads it (each run recording
    the settings ``config``)."""
    (results / name).parent.mkdir(parents=True, exist_ok=True)
    runs = [{"model": key.split("|")[0], "config": config} for key in ranks]
    (results / f"{name}.json").write_text(json.dumps({"name": name, "runs": runs}))
    np.savez_compressed(results / f"{name}.ranks.npz", **ranks)


def test_schedule_report_verdicts(tmp_path: Path) -> None:
    """Default best, tied with constant, within noise of the best, or worse, from per-sample ranks."""
    report = schedule_report
    rng = np.random.default_rng(0)
    good = rng.integers(1, 15, 400)  # ranks: about 95 % within the top 20
    bad = rng.integers(1, 60, 400)  # about a third within the top 20
    noisy = good.copy()
    noisy[:3] = 100  # three samples fall out: within noise
    results = tmp_path / "results"
    write_harness_result(results, "schedules/log-paper", {"A|1": bad, "B|1": good, "C|1": good})
    write_harness_result(results, "schedules/log-constant", {"A|1": good, "B|1": noisy, "C|1": good})
    # the previous default (plateau-p2), under the name its runs were written with
    write_harness_result(results, "schedules/log-plateau", {"A|1": bad, "B|1": noisy, "C|1": noisy})
    # the default, from the plain harness run whose runs recorded its settings
    write_harness_result(
        results, "log", {"A|1": good, "B|1": bad, "C|1": noisy},
        lr_scheduler="plateau", lr_restore_best=True, lr_patience=1,
    )  # fmt: skip
    rows = {
        row["model"]: row for row in report.main(["--datasets", "log", "--models", "A,B,C", "--results", str(results)])
    }
    assert rows["A"]["verdict"] == "best (the same ranks as constant)"
    assert rows["B"]["verdict"] == "worse" and rows["B"]["best"] == "paper" and rows["B"]["p_value"] < 0.05
    assert rows["C"]["verdict"] == "within noise (the same ranks as plateau-p2)"
    assert rows["C"]["default_minus_best"] == pytest.approx(-3 / 400)
    assert rows["C"]["plateau-p1"]["file"] == "log.json"
    assert rows["C"]["plateau-p2"]["file"] == "schedules/log-plateau.json"
    text = (results / "schedules" / "summary.md").read_text()
    assert "| log (400 tests) | B |" in text and (results / "schedules" / "summary.png").stat().st_size > 0
    assert "plateau-p1 (default)" in text
    assert rows["A"]["default_minus_previous"] > 0.3 and rows["A"]["p_value_previous"] < 0.05
    assert rows["C"]["default_minus_previous"] == 0 and rows["C"]["p_value_previous"] == 1
    # a plain harness run of the plateau schedule before lr_restore_best is plateau-old, not the default
    write_harness_result(results, "old", {"A|1": good}, lr_scheduler="plateau")
    write_harness_result(results, "schedules/old-paper", {"A|1": bad})
    (row,) = report.main(["--datasets", "old", "--models", "A", "--results", str(results)])
    assert row["plateau-old"]["file"] == "old.json" and "plateau-p1" not in row and row["verdict"] == "default not run"
    # --run names the file of one cell: here the default's run under a larger epoch budget
    write_harness_result(results, "schedules/old-plateau-epochs20", {"A|1": good})
    (row,) = report.main(["--datasets", "old", "--models", "A", "--results", str(results),
                          "--run", "old:plateau-p1=old-plateau-epochs20"])  # fmt: skip
    assert row["plateau-p1"]["file"] == "schedules/old-plateau-epochs20.json"
    assert row["verdict"] == "best (the same ranks as plateau-old)"
    for bad_option in ("old:plateau-p1", "old:sgd=x", "old:plateau-p1=../x", "old=x"):
        with pytest.raises(SystemExit) as exit_info:
            report.main(["--datasets", "old", "--models", "A", "--results", str(results), "--run", bad_option])
        assert exit_info.value.code == 2
    with pytest.raises(SystemExit, match="does not exist"):
        report.main(["--datasets", "old", "--models", "A", "--results", str(results), "--run", "old:paper=missing"])


def test_the_schedule_reports_default_is_the_packages() -> None:
    """The report's default schedule is what the settings table's defaults run."""
    defaults = {key: BY_KEY[key].default for key in ("lr_scheduler", "lr_restore_best", "lr_patience")}
    assert schedule_report.schedule_of(defaults) == schedule_report.DEFAULT


def test_harness_command_names_its_tools_and_runs_one(capsys) -> None:
    """``python -m recbole_tasrec.harness``: without a known tool it lists the tools; with one, that tool runs."""
    with pytest.raises(SystemExit, match="(?s)unknown tool 'nonsense'.*reproduce.*schedules"):
        harness_command(["nonsense"])
    with pytest.raises(SystemExit) as exit_info:
        harness_command(["schedules", "--help"])
    assert exit_info.value.code == 0 and "--datasets" in capsys.readouterr().out
