"""Training a served neural model on the day it folds in (``advance --train``): continual training's ``daily`` step
in a serving process.

Continual training (:mod:`recbole_tasrec.continual`) trains on a day's samples once every one of them has been
scored, with the trainer's own epoch. ``advance --train`` does the same for a served model:

* the day's samples are RecBole's: every prefix of each session (its last ``MAX_ITEM_LIST_LENGTH`` known clicks)
  with the next known click as the target (:func:`prefix_samples`), of the day the served state scored them as;
* they train a copy of the served weights (:func:`train_copy`), never the served ones, with the state that
  scored them: TASRec's graph before the day is folded in, as ``continual: daily`` trains a test day on the
  graph that scored it. The copy is swapped in with the rest of the next state, in one assignment;
* each pass is :class:`~recbole_tasrec.trainer.ScheduledTrainer`'s ``_train_epoch`` (the same loss, optimiser
  builder and steps as training and continual training) over shuffled batches of ``train_batch_size``, at a
  constant rate;
* the optimiser starts fresh each day, at ``--learning-rate`` or the artefact's ``continual_learning_rate`` (the
  run's setting, or the rate its checkpoint's optimiser held, recorded by ``export``). Adam's moments are not
  stored in the artefact (they would triple its size); continual training keeps them from day to day, so a
  day's first steps here are Adam's first steps (about the rate per weight), a departure to know of.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from recbole.data.interaction import Interaction
from torch import nn

from recbole_tasrec.continual import ContinualSettings
from recbole_tasrec.serve import artifact
from recbole_tasrec.trainer import ScheduledTrainer

logger = logging.getLogger(__name__)

#: the config values a day's training reads, kept in the artefact's settings besides the model's
TRAINING_KEYS = (
    "learner",
    "learning_rate",
    "weight_decay",
    "train_batch_size",
    "continual_epochs",
    "continual_learning_rate",
    "seed",
    "loss_type",
)


@dataclass(frozen=True)
class TrainOptions:
    """How to train on a day: ``epochs`` passes at ``learning_rate`` (``None``: the artefact's)."""

    epochs: int | None = None
    learning_rate: float | None = None

    def resolved(self, settings: artifact.Settings) -> TrainOptions:
        """These options with the artefact's defaults filled in, checked."""
        epochs = self.epochs if self.epochs is not None else int(settings["continual_epochs"] or 1)
        rate = self.learning_rate if self.learning_rate is not None else settings["continual_learning_rate"]
        rate = rate if rate is not None else settings["learning_rate"]
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise ValueError(f"--train-epochs must be a whole number of at least 1, got {epochs!r}")
        if not isinstance(rate, int | float) or isinstance(rate, bool) or not rate > 0:
            raise ValueError(f"--learning-rate must be a number above 0, got {rate!r}")
        return TrainOptions(epochs, float(rate))


def training_settings(config: Any, ended_with: float | None = None) -> dict[str, Any]:
    """:data:`TRAINING_KEYS` of a run's config; ``continual_learning_rate`` unset becomes ``ended_with`` (the rate the
    checkpoint's optimiser held) times ``continual_learning_rate_scale``, as continual training's rate is."""
    settings = {key: config[key] for key in TRAINING_KEYS if artifact.is_plain(config[key])}
    if settings.get("continual_learning_rate") is None and ended_with is not None:
        # a run from before the setting existed has no scale (1); a RecBole Config has no get()
        scale = config["continual_learning_rate_scale"] if "continual_learning_rate_scale" in config else None  # noqa: SIM401
        rule = ContinualSettings("daily", 1, None, 1.0 if scale is None else float(scale))
        (settings["continual_learning_rate"],) = rule.rates([float(ended_with)])  # the continual phase's own rule
    return settings


def checkpoint_rate(checkpoint: dict[str, Any]) -> float | None:
    """The learning rate a checkpoint's optimiser held (its first group's), if it saved one."""
    groups = (checkpoint.get("optimizer") or {}).get("param_groups") or []
    return float(groups[0]["lr"]) if groups else None


def prefix_samples(items: np.ndarray, counts: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RecBole's samples of one day's sessions (``items``: every known click, ``counts`` per session, in order):
    for each click after a session's first, the left-aligned, zero-padded ``(N, max_len)`` last ``max_len``
    clicks before it, their lengths, and the click itself (the target)."""
    ends = np.cumsum(counts)
    starts = ends - counts
    session = np.repeat(np.arange(len(counts)), counts)
    target = np.flatnonzero(np.arange(len(items)) > starts[session])  # every click but a session's first
    first = np.maximum(starts[session[target]], target - max_len)
    lengths = target - first
    offsets = np.arange(max_len)
    inside = offsets < lengths[:, None]
    seq = np.where(inside, items[np.where(inside, first[:, None] + offsets, 0)] if len(items) else 0, 0)
    return seq.astype(np.int64), lengths.astype(np.int64), items[target].astype(np.int64)


def sample_batch(model: nn.Module, seq: np.ndarray, lengths: np.ndarray, day: int, targets: np.ndarray | None = None):
    """An :class:`Interaction` of padded sessions (and their targets) scored as day ``day``, for ``model``'s fields."""
    fields = {
        model.ITEM_SEQ: torch.from_numpy(seq),
        model.ITEM_SEQ_LEN: torch.from_numpy(lengths),
        getattr(model, "day_field", "day"): torch.full((len(lengths),), float(day)),
    }
    if targets is not None:
        fields[model.POS_ITEM_ID] = torch.from_numpy(targets)
    return Interaction(fields)


class DayBatches:
    """The day's samples as a training loader: shuffled batches of ``batch_size`` (what ``_train_epoch`` iterates)."""

    shuffle = True

    def __init__(self, samples: Interaction, batch_size: int, seed: int) -> None:
        self.samples, self.batch_size = samples, max(int(batch_size), 1)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.samples) // self.batch_size)

    def __iter__(self) -> Iterator[Interaction]:
        order = torch.randperm(len(self.samples), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            yield self.samples[order[start : start + self.batch_size]]


class DayTrainer(ScheduledTrainer):
    """:class:`ScheduledTrainer`'s epoch and optimiser on one model, without a run.

    ``ScheduledTrainer.__init__`` is not called: it opens a run (a checkpoint folder, a tensorboard writer in the
    run folder) that a serving process has not. These are the attributes that ``_train_epoch`` and
    ``_build_optimizer`` read (RecBole 1.2.1, ``trainer/trainer.py``), for one process, no mixed precision."""

    def __init__(self, model: nn.Module, settings: artifact.Settings, learning_rate: float) -> None:
        self.config = artifact.Settings({**settings, "single_spec": True})
        self.logger = logger
        self.model = model
        self.device = next(model.parameters()).device
        self.learner = str(settings["learner"] or "adam")
        self.learning_rate = learning_rate
        self.weight_decay = float(settings["weight_decay"] or 0.0)
        self.clip_grad_norm = None
        self.enable_amp = self.enable_scaler = self.gpu_available = False
        self.lr_scheduler, self.lr_decay_epochs, self.optimizer_steps = "constant", 0, 0
        self.optimizer = self._build_optimizer()


def train_copy(
    model: nn.Module, settings: artifact.Settings, samples: Interaction, day: int, options: TrainOptions
) -> tuple[nn.Module, float]:
    """A copy of ``model`` trained ``options.epochs`` passes over ``samples`` (``model`` is left as it is), in
    evaluation mode, and the last pass's mean loss."""
    if str(settings["loss_type"] or "CE") != "CE":
        raise ValueError(f"training on a day needs loss_type CE (no negative sampling), got {settings['loss_type']}")
    trained = copy.deepcopy(model)
    trainer = DayTrainer(trained, settings, float(options.learning_rate))
    batches = DayBatches(samples, int(settings["train_batch_size"] or 128), int(settings["seed"] or 0) + day)
    loss = 0.0
    for epoch in range(int(options.epochs)):
        total = trainer._train_epoch(batches, epoch, show_progress=False)
        loss = float(sum(total) if isinstance(total, tuple) else total or 0.0) / max(len(batches), 1)
    return trained.eval(), loss
