"""Continual training: the weights keep up with the days, as a shop that retrains every night would.

The paper's protocol (``continual: off``) scores every validation and test sample with the weights that early
stopping picked, so a neural model's weights only ever see the training days while the temporal graph (and a
kNN index, CSRM's memory) grows through the validation and test days. Two more protocols, for every model that
trains (``trains = False`` models, the kNN baselines, are left as they are):

* ``refit``: after early stopping has picked the best epoch (its weights and optimiser state loaded), train
  ``continual_epochs`` passes over the validation samples, then score the test days;
* ``daily``: ``refit``, then score the test days one by one; once every sample of a day is scored, train
  ``continual_epochs`` passes over that day's samples before the next day is scored (the last day too, so the
  saved model is the one that would serve the day after).

No sample trains the model before it has been scored. Training reuses the trainer's own epoch
(``_train_epoch``: the same batches, loss, optimiser and, over several processes, the same sharding) on a loader
restricted to the day's samples, at ``continual_learning_rate`` (default: the rate training ended with, times
``continual_learning_rate_scale``), held constant. A model whose evaluation scores a sample on another day's
graph than its own (TASRec's ``temporal_eval: frozen``) trains on that same graph, so the weights never learn
from a graph the scores never see.

Test metrics are those of one evaluation over all test samples: every day's per-sample rows (top-k hits, ranks,
as RecBole's collector gathers them) are kept and the metrics are computed once from all of them, never as an
average of per-day averages.
"""

from __future__ import annotations

from dataclasses import dataclass
from logging import getLogger
from pathlib import Path
from typing import Any

import numpy as np
import torch
from recbole.utils import init_seed, set_color

from recbole_tasrec.checkpoint import load_trusted
from recbole_tasrec.distributed.trainer import ROW_KEYS  # the collector's per-sample rows

#: Appended to the best checkpoint's stem for the model after the last day: the best-validation checkpoint stays
#: what it was (``--resume`` and ``evaluate_checkpoint`` start from it), and it still sorts first.
CONTINUAL_SUFFIX = "_continual"


@dataclass(frozen=True)
class ContinualSettings:
    mode: str
    epochs: int
    learning_rate: float | None
    learning_rate_scale: float = 1.0

    def rates(self, ended_with: list[float]) -> list[float]:
        """The constant rate of each optimiser group: ``learning_rate`` if set, else the rate each group ended
        training with times ``learning_rate_scale`` (a multiple carries over between models and data sets whose
        training ends at different rates; an absolute rate does not)."""
        if self.learning_rate is not None:
            return [self.learning_rate] * len(ended_with)
        return [rate * self.learning_rate_scale for rate in ended_with]


def continual_settings(config: Any) -> ContinualSettings:
    """``continual``, ``continual_epochs``, ``continual_learning_rate`` and ``continual_learning_rate_scale`` of
    ``config`` (checked by the settings table, :mod:`recbole_tasrec.settings`, when the config was built)."""
    rate, scale = config["continual_learning_rate"], config["continual_learning_rate_scale"]  # None: a run from before
    return ContinualSettings(
        config["continual"],
        int(config["continual_epochs"]),
        None if rate is None else float(rate),
        1.0 if scale is None else float(scale),
    )


def is_on(config: Any, model: Any) -> bool:
    """Whether the test phase trains as it goes: ``continual`` is not ``off`` and the model trains at all."""
    return continual_settings(config).mode != "off" and getattr(model, "trains", True)


def continual_checkpoint_for(saved_model_file: str | Path) -> Path:
    """Where the model after the last test day is saved: next to the best checkpoint, with :data:`CONTINUAL_SUFFIX`."""
    path = Path(saved_model_file)
    return path.with_name(f"{path.stem}{CONTINUAL_SUFFIX}{path.suffix}")


def samples_of_days(part: Any, day_field: str, days: np.ndarray) -> Any:
    """The samples of ``part`` (a split) whose day is in ``days``, in their order."""
    keep = np.isin(part.inter_feat[day_field].long().numpy(), days)
    return part.copy(part.inter_feat[torch.from_numpy(np.flatnonzero(keep))])


def as_scored(part: Any, model: Any, day_field: str) -> Any:
    """``part`` with each sample's day replaced by the day whose graph scored it (``model.graph_day`` in evaluation
    mode), so that training uses the graph the scores used; ``part`` itself for a model without one."""
    graph_day = getattr(model, "graph_day", None)
    if graph_day is None:
        return part
    was_training = model.training
    model.eval()
    days = part.inter_feat[day_field]
    scored_on = graph_day(days.long()).to(days.dtype)
    model.train(was_training)
    if torch.equal(scored_on, days):
        return part
    feat = part.inter_feat  # shares its tensors with the data set: build a new one, never write into them
    return part.copy(type(feat)({**feat.interaction, day_field: scored_on}))


class RowRecorder:
    """Stands in for a trainer's ``evaluator``: evaluates as it does, and keeps every evaluation's per-sample rows
    (:data:`ROW_KEYS`) so that :meth:`combined` can evaluate all of them at once."""

    def __init__(self, evaluator: Any) -> None:
        self.evaluator = evaluator
        self.rows: dict[str, list[torch.Tensor]] = {}
        self.struct: Any = None

    def evaluate(self, struct: Any) -> Any:
        for key in ROW_KEYS:
            if key in struct:
                self.rows.setdefault(key, []).append(struct.get(key))
        self.struct = struct
        return self.evaluator.evaluate(struct)

    def combined(self) -> Any:
        """The metrics of one evaluation over every row recorded so far."""
        for key, parts in self.rows.items():
            self.struct.set(key, torch.cat(parts))
        return self.evaluator.evaluate(self.struct)


@dataclass
class TestPhase:
    """What :func:`evaluate_day_by_day` hands back: the test metrics over all test samples, each day's metrics and
    continual loss, and the checkpoint of the model after the last day (``None`` when the run does not save)."""

    test_result: dict[str, float]
    day_results: dict[int, dict[str, float]]
    day_losses: dict[str, float]
    checkpoint: str | None


class ContinualTester:
    """Runs the test phase of one trained ``trainer`` under ``continual: refit | daily`` (module docstring)."""

    def __init__(self, trainer: Any, prepared: Any, settings: ContinualSettings) -> None:
        from recbole_tasrec.quick_start import make_dataloaders  # quick_start imports this module

        self.trainer, self.prepared, self.settings = trainer, prepared, settings
        self.config = trainer.config
        self.day_field = prepared.dataset.day_field
        self.logger = getLogger()
        # the run's loader classes and samplers (built once: a sampler indexes every session), for any day's samples
        self._train_loader, _, self._test_loader = make_dataloaders(self.config, prepared)
        self._passes = 0
        self._best_epoch = -1  # the epoch the continual phase started from, recorded in its checkpoint

    def start_from_best(self, saved: bool) -> None:
        """Load the best epoch's weights and optimiser state (when the run saved them), set the continual rate,
        and reseed: the continual phase is then the same whether training ran through or was resumed."""
        trainer = self.trainer
        ended_with = trainer.learning_rates
        if saved:
            checkpoint = load_trusted(trainer.saved_model_file, ("state_dict", "optimizer"))
            trainer.model.load_state_dict(checkpoint["state_dict"])
            trainer.model.load_other_parameter(checkpoint.get("other_parameter"))
            trainer.optimizer.load_state_dict(checkpoint["optimizer"])
            self._best_epoch = int(checkpoint.get("epoch", -1))
        for group, rate in zip(trainer.optimizer.param_groups, self.settings.rates(ended_with), strict=True):
            group["lr"] = rate
        trainer.lr_scheduler = "constant"  # the continual rate stays as it is
        init_seed(self.config["seed"] + self.config["local_rank"], self.config["reproducibility"])

    def loader(self, part: Any, training: bool) -> Any:
        """A loader of the run's training (or test) kind over ``part``'s samples."""
        like = self._train_loader if training else self._test_loader
        shuffle = self.config["shuffle"] if training else False
        return type(like)(self.config, part, like._sampler, shuffle=shuffle)

    def train_on(self, part: Any, what: str) -> float:
        """``continual_epochs`` of the trainer's own epochs over ``part``'s samples; the last pass's mean loss."""
        loader = self.loader(as_scored(part, self.trainer.model, self.day_field), training=True)
        loss = 0.0
        for _ in range(self.settings.epochs):
            total = self.trainer._train_epoch(loader, self._passes, show_progress=False)
            self._passes += 1
            loss = float(sum(total) if isinstance(total, tuple) else total) / max(len(loader), 1)
        self.logger.info(
            set_color("continual", "green") + f": trained on {what} ({len(part):,} samples), loss {loss:.4f}"
        )
        return loss

    def score(self, part: Any) -> dict[str, float]:
        """The trainer's evaluation of ``part`` (its rows recorded by the trainer's :class:`RowRecorder`)."""
        result = self.trainer.evaluate(self.loader(part, training=False), load_best_model=False, show_progress=False)
        return {key: float(value) for key, value in result.items()}

    def run(self, saved: bool) -> TestPhase:
        trainer, test = self.trainer, self.prepared.test
        self.start_from_best(saved)
        losses = {"valid": self.train_on(self.prepared.valid, "the validation samples")}
        recorder, evaluator = RowRecorder(trainer.evaluator), trainer.evaluator
        trainer.evaluator = recorder
        day_results: dict[int, dict[str, float]] = {}
        try:
            for day in np.unique(test.inter_feat[self.day_field].long().numpy()).tolist():
                part = samples_of_days(test, self.day_field, np.array([day]))
                day_results[day] = self.score(part)
                self.logger.info(set_color(f"test day {day}", "yellow") + f": {day_results[day]}")
                if self.settings.mode == "daily":
                    losses[f"day {day}"] = self.train_on(part, f"test day {day}")
            result = {key: float(value) for key, value in recorder.combined().items()}
        finally:
            trainer.evaluator = evaluator
        checkpoint = None
        if saved:
            checkpoint = str(continual_checkpoint_for(trainer.saved_model_file))
            trainer._save_checkpoint(self._best_epoch, saved_model_file=checkpoint)
        return TestPhase(result, day_results, losses, checkpoint)


def evaluate_day_by_day(trainer: Any, prepared: Any, saved: bool) -> TestPhase:
    """The test phase of a trained run under ``continual: refit | daily``: test metrics over all test samples (the
    structure of RecBole's ``evaluate``), computed day by day, training as the protocol says in between.

    Args:
        trainer: the run's trainer after ``fit``.
        prepared: the run's :class:`~recbole_tasrec.quick_start.PreparedData`.
        saved: the run saved its best checkpoint; the continual phase starts from it and the model after the
            last day is saved next to it (:func:`continual_checkpoint_for`).
    """
    return ContinualTester(trainer, prepared, continual_settings(trainer.config)).run(saved)


__all__ = [
    "ContinualSettings",
    "RowRecorder",
    "TestPhase",
    "continual_checkpoint_for",
    "continual_settings",
    "evaluate_day_by_day",
    "is_on",
]
