"""``lr_restore_best``: a plateau decay first puts back the best evaluation's weights and Adam state.

The trainer tests drive RecBole's ``fit`` with real Adam steps on a one-layer model and scripted validation
scores (milliseconds); the resume test trains TASRec on the tiny set with scripted validation scores, so that
the decay falls after the interruption."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import torch
import torch.distributed as dist
from recbole.trainer import Trainer

from recbole_tasrec import distributed
from recbole_tasrec.checkpoint import load_trusted
from recbole_tasrec.quick_start import run_recbole_tasrec
from recbole_tasrec.resume import resume_file_for
from recbole_tasrec.trainer import ScheduledTrainer

from . import test_trainer as trainer_tests
from .conftest import small_settings
from .test_distributed import free_port
from .test_resume import Interrupted, assert_same_weights, interrupt_after, only_checkpoint
from .test_trainer import make_trainer


def fit_with_scores(trainer: ScheduledTrainer, scores: list[float], monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """``fit`` over ``len(scores)`` epochs of one real Adam step each; epoch e validates at ``scores[e]``.
    Returns, per epoch, the weights and Adam state it started from and ended with, and its rate."""
    epochs: list[dict] = []

    def snapshot(self: ScheduledTrainer) -> dict[str, Any]:
        state = self.optimizer.state_dict()["state"]
        return {"weight": self.model.weight.detach().clone(), "exp_avg": [s["exp_avg"].clone() for s in state.values()]}

    def adam_step(self: ScheduledTrainer, epoch_idx: int) -> None:
        start = snapshot(self)
        self.optimizer.zero_grad()
        (self.model(torch.full((4, 2), float(epoch_idx + 1))) ** 2).sum().backward()
        self.optimizer.step()
        epochs.append({"start": start, "end": snapshot(self)})

    rates = trainer_tests.fit_with_scores(trainer, scores, monkeypatch, batches_per_epoch=1, train_step=adam_step)
    for epoch, rate in zip(epochs, rates, strict=True):
        epoch["start"]["lr"] = rate
    return epochs


def same(left: dict[str, Any], right: dict[str, Any]) -> bool:
    return torch.equal(left["weight"], right["weight"]) and all(
        torch.equal(a, b) for a, b in zip(left["exp_avg"], right["exp_avg"], strict=True)
    )


# best at epoch 1, then two drops: patience 2 decays after epoch 3
SCORES = [0.1, 0.3, 0.2, 0.2, 0.25]


def test_a_decay_restores_the_best_epochs_weights_and_adam_state(tmp_path, monkeypatch) -> None:
    trainer = make_trainer(tmp_path, learning_rate=0.5, lr_patience=2, lr_decay_min_steps=0)
    assert trainer.lr_restore_best  # the default
    epochs = fit_with_scores(trainer, SCORES, monkeypatch)
    assert [e["start"]["lr"] for e in epochs] == pytest.approx([0.5, 0.5, 0.5, 0.5, 0.05])
    assert same(epochs[4]["start"], epochs[1]["end"])  # after the decay: the best epoch's state, at the new rate
    assert not same(epochs[4]["start"], epochs[3]["end"])
    for e in range(1, 4):  # no decay, no restore: each epoch starts where the last one ended
        assert same(epochs[e]["start"], epochs[e - 1]["end"])


def test_off_decays_from_the_last_weights(tmp_path, monkeypatch) -> None:
    trainer = make_trainer(tmp_path, learning_rate=0.5, lr_patience=2, lr_decay_min_steps=0, lr_restore_best=False)
    epochs = fit_with_scores(trainer, SCORES, monkeypatch)
    assert [e["start"]["lr"] for e in epochs] == pytest.approx([0.5, 0.5, 0.5, 0.5, 0.05])
    assert all(same(epochs[e]["start"], epochs[e - 1]["end"]) for e in range(1, 5))
    assert trainer.best_state is None  # nothing copied


def test_other_schedules_never_restore(tmp_path, monkeypatch) -> None:
    trainer = make_trainer(tmp_path, learning_rate=0.5, lr_scheduler="paper", lr_decay_epochs=2)
    assert not trainer.lr_restore_best
    epochs = fit_with_scores(trainer, SCORES, monkeypatch)
    assert all(same(epochs[e]["start"], epochs[e - 1]["end"]) for e in range(1, 5))


def test_the_copy_is_not_changed_by_later_training(tmp_path, monkeypatch) -> None:
    trainer = make_trainer(tmp_path, learning_rate=0.5, lr_patience=2, lr_decay_min_steps=0)
    epochs = fit_with_scores(trainer, [0.1, 0.3, 0.2], monkeypatch)  # no decay yet
    assert torch.equal(trainer.best_state["state_dict"]["weight"], epochs[1]["end"]["weight"])
    assert trainer.best_state["state_dict"]["weight"].device.type == "cpu"


# --- resume ---------------------------------------------------------------------------------------------------
RESUMED = {"epochs": 3, "train_batch_size": 256, "lr_patience": 1, "lr_decay_min_steps": 0}


def scripted_validation(monkeypatch: pytest.MonkeyPatch, scores: list[float]) -> None:
    """Real training, validation scores by epoch (the epoch is the last key of the trainer's loss record)."""

    def valid_epoch(self, valid_data, show_progress=False):
        score = scores[max(self.train_loss_dict)]
        return score, {"recall@20": score, "mrr@20": score}

    monkeypatch.setattr(Trainer, "_valid_epoch", valid_epoch)


def test_a_resumed_run_restores_the_best_state_from_its_checkpoint(data_dir, tmp_path, monkeypatch) -> None:
    """Best at epoch 0, interrupted after it, resumed: epoch 1 drops, the decay restores epoch 0's state, read
    back from the best-model checkpoint; the run ends with the uninterrupted run's weights."""
    scripted_validation(monkeypatch, [0.3, 0.1, 0.4])
    settings = {name: small_settings(data_dir, tmp_path / name, **RESUMED) for name in ("full", "cut")}
    full = run_recbole_tasrec("TASRec", "tiny", config_dict=settings["full"])
    with pytest.raises(Interrupted):
        run_recbole_tasrec("TASRec", "tiny", config_dict=settings["cut"], epoch_callback=interrupt_after(0))
    cut = only_checkpoint(tmp_path / "cut")
    resumed = run_recbole_tasrec("TASRec", "tiny", config_dict=settings["cut"], resume=cut)
    assert resumed["train_loss"] == full["train_loss"]
    last, uninterrupted = (load_trusted(resume_file_for(run)) for run in (cut, full["checkpoint"]))
    assert last["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-4)  # one decay happened
    assert_same_weights(last["state_dict"], uninterrupted["state_dict"])


# --- several processes ------------------------------------------------------------------------------------------
def weights_digest(model: torch.nn.Module) -> str:
    flat_weights = torch.cat([p.detach().flatten().cpu() for p in model.parameters()])
    return hashlib.sha256(flat_weights.numpy().tobytes()).hexdigest()


def run_with_restores_recorded(config_dict: dict[str, Any], scores: list[float]) -> dict[str, Any]:
    """One rank's run (spawned: the patches are made here) with scripted validation scores; after each restore
    the rank gathers every rank's weights digest and compares its own with the best-model checkpoint's."""
    restores: list[dict[str, Any]] = []
    restore_best = ScheduledTrainer.restore_best

    def recording_restore(self: ScheduledTrainer) -> None:
        restore_best(self)
        digests: list[str | None] = [None] * dist.get_world_size()
        dist.all_gather_object(digests, weights_digest(self.model))
        best = load_trusted(self.saved_model_file)["state_dict"]  # rank 0 wrote it at the best evaluation
        restored = self.model.state_dict()
        same = all(torch.equal(restored[key].cpu(), value) for key, value in best.items() if torch.is_tensor(value))
        restores.append({"digests": digests, "same_as_best_checkpoint": same})

    def valid_epoch(self, valid_data, show_progress=False):
        score = scores[max(self.train_loss_dict)]
        return score, {"recall@20": score, "mrr@20": score}

    ScheduledTrainer.restore_best = recording_restore
    Trainer._valid_epoch = valid_epoch
    return {**run_recbole_tasrec("TASRec", "tiny", config_dict=config_dict), "restores": restores}


@pytest.mark.slow
def test_every_rank_restores_the_same_best_weights(data_dir, tmp_path) -> None:
    settings = small_settings(data_dir, tmp_path, **RESUMED)
    launch = {"nproc": 2, "world_size": 2, "ip": "localhost", "port": free_port(), "offset": 0}
    result = distributed.launch(launch, run_with_restores_recorded, config_dict=settings, scores=[0.3, 0.1, 0.4])
    (restore,) = result["restores"]  # one decay, after epoch 1
    assert restore["same_as_best_checkpoint"]  # epoch 0's weights, which rank 0 saved as the best model
    assert len(set(restore["digests"])) == 1  # on both ranks
