"""The learning-rate schedules of TASRecTrainer, driven through RecBole's own ``fit`` loop with scripted
training and validation epochs (no data, no model training: milliseconds)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from recbole.trainer import Trainer

from recbole_tasrec.config import Config
from recbole_tasrec.trainer import TASRecTrainer


class OneLayer(torch.nn.Linear):
    """A model with RecBole's ``other_parameter`` interface (no state outside its parameters)."""

    def other_parameter(self) -> None:
        return None

    def load_other_parameter(self, para: object) -> None:
        assert para is None


def make_trainer(tmp_path: Path, **settings) -> TASRecTrainer:
    config = Config("SRGNN", "sample", config_dict={"run_dir": str(tmp_path), "state": "WARNING", **settings})
    return TASRecTrainer(config, OneLayer(2, 1))


def fit_with_scores(
    trainer: TASRecTrainer,
    scores: list[float],
    monkeypatch: pytest.MonkeyPatch,
    batches_per_epoch: int = 10_000,
    train_step: Callable[[TASRecTrainer, int], None] | None = None,
) -> list[float]:
    """Run ``fit`` for ``len(scores)`` epochs (or until early stopping); the validation score of epoch e is
    ``scores[e]``; an epoch counts ``batches_per_epoch`` optimiser steps and runs ``train_step(trainer, e)``
    (default: nothing). Returns the learning rate in force during each epoch that trained."""
    rates: list[float] = []

    def train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        rates.append(self.optimizer.param_groups[0]["lr"])
        if train_step is not None:
            train_step(self, epoch_idx)
        return 1.0

    def valid_epoch(self, valid_data, show_progress=False):
        return scores[len(rates) - 1], {"recall@20": scores[len(rates) - 1]}

    monkeypatch.setattr(Trainer, "_train_epoch", train_epoch)
    monkeypatch.setattr(Trainer, "_valid_epoch", valid_epoch)
    trainer.epochs = len(scores)
    trainer.fit(range(batches_per_epoch), object(), saved=False)
    return rates


def test_plateau_is_the_default_and_decays_after_lr_patience_flat_evaluations(tmp_path, monkeypatch) -> None:
    assert make_trainer(tmp_path).lr_patience == 1  # the default: a decay at the first drop
    trainer = make_trainer(tmp_path, learning_rate=1.0, lr_patience=2)
    assert trainer.lr_scheduler == "plateau" and trainer.stopping_step == 5
    # improves, improves, ties (counts as improvement, as RecBole's early stopping), 2 drops, improves, 2 drops
    rates = fit_with_scores(trainer, [0.1, 0.2, 0.2, 0.1, 0.1, 0.3, 0.2, 0.1, 0.1], monkeypatch)
    assert rates == pytest.approx([1.0, 1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.01])


def test_no_plateau_decay_before_lr_decay_min_steps(tmp_path, monkeypatch) -> None:
    trainer = make_trainer(tmp_path, learning_rate=1.0, lr_decay_min_steps=50, stopping_step=9, lr_patience=2)
    # 10 batches an epoch, flat after the first: patience 2 is reached after epoch 2 (30 batches), but the first
    # decay waits for 50 batches (after epoch 4); without the guard: [1, 1, 1, 0.1, 0.1, 0.01]
    rates = fit_with_scores(trainer, [0.5, 0.4, 0.4, 0.4, 0.4, 0.4], monkeypatch, batches_per_epoch=10)
    assert rates == pytest.approx([1.0, 1.0, 1.0, 1.0, 1.0, 0.1])


def test_plateau_patience_and_min_lr(tmp_path, monkeypatch) -> None:
    trainer = make_trainer(tmp_path, learning_rate=1.0, lr_patience=2, stopping_step=9, min_lr=0.05)
    rates = fit_with_scores(trainer, [0.5, 0.4, 0.4, 0.3, 0.3, 0.3, 0.3, 0.3], monkeypatch)
    # two evaluations below the best -> x0.1; two more -> x0.1 again, but not below min_lr
    assert rates == pytest.approx([1.0, 1.0, 1.0, 0.1, 0.1, 0.05, 0.05, 0.05])


def test_early_stopping_comes_after_the_plateau_decays(tmp_path, monkeypatch) -> None:
    trainer = make_trainer(tmp_path, learning_rate=1.0, lr_patience=1, stopping_step=2)
    rates = fit_with_scores(trainer, [0.5, 0.1, 0.1, 0.1, 0.1, 0.1], monkeypatch)
    # RecBole stops after stopping_step + 1 = 3 flat evaluations; each one decayed the rate first
    assert rates == pytest.approx([1.0, 1.0, 0.1, 0.01])


def test_paper_schedule_decays_every_lr_decay_epochs(tmp_path, monkeypatch) -> None:
    trainer = make_trainer(tmp_path, learning_rate=1.0, lr_scheduler="paper", lr_decay_epochs=2)
    rates = fit_with_scores(trainer, [0.1, 0.2, 0.3, 0.4, 0.5], monkeypatch)
    assert rates == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])


def test_constant_schedule_never_decays(tmp_path, monkeypatch) -> None:
    trainer = make_trainer(tmp_path, learning_rate=0.5, lr_scheduler="constant", stopping_step=10)
    assert fit_with_scores(trainer, [0.5, 0.1, 0.1, 0.1], monkeypatch) == [0.5] * 4


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"lr_scheduler": "cosine"}, "must be one of plateau, paper, constant"),
        ({"lr_patience": 3, "stopping_step": 3}, "must be smaller than stopping_step"),
        ({"lr_patience": 0}, "must be a whole number >= 1"),
        ({"lr_decay_gamma": 1.5}, "must be a number > 0 and < 1"),
        ({"lr_scheduler": "paper", "lr_decay_epochs": 0}, "lr_decay_epochs must be a whole number >= 1"),
    ],
)
def test_bad_schedule_settings_say_what_to_do(tmp_path, settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_trainer(tmp_path, **settings)


def test_a_model_that_does_not_train_gets_one_epoch_and_no_schedule(tmp_path) -> None:
    class NearestNeighbours(torch.nn.Linear):
        trains = False

    config = Config("SRGNN", "sample", config_dict={"run_dir": str(tmp_path), "epochs": 5, "lr_scheduler": "paper"})
    assert TASRecTrainer(config, torch.nn.Linear(2, 1)).lr_scheduler == "paper"  # a trained model's schedule
    trainer = TASRecTrainer(config, NearestNeighbours(2, 1))
    assert trainer.epochs == 1 and trainer.lr_scheduler == "constant"
