"""RecBole's ``Trainer`` with the paper's learning-rate schedule and what sweeps need.

RecBole's Trainer has no scheduler; the paper (3.1) decays Adam's learning rate after two epochs, as
SR-GNN does. It also names checkpoints by the second (two trials of a sweep collide) and hands
``fit``'s callback only the validation score, not the metrics.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from recbole.trainer import Trainer
from recbole.utils import get_local_time

EpochCallback = Callable[[int, dict[str, float]], None]


def adam_options(model: Any) -> dict[str, Any]:
    """Extra ``torch.optim.Adam`` arguments for ``model``: models with ``fused_adam = True`` (TASRec) get the
    fused kernel, the same update in one pass over all parameters (a CPU step ~4x cheaper; issue 9)."""
    return {"fused": True} if getattr(model, "fused_adam", False) else {}


class TASRecTrainer(Trainer):
    """``Trainer`` + StepLR (``lr_decay_epochs``, ``lr_decay_gamma``) + per-epoch validation callback.

    Used by :func:`recbole_tasrec.run_recbole_tasrec` for every model, so baselines get the same schedule
    when ``lr_decay_epochs`` is set for them.
    """

    def __init__(self, config: Any, model: Any) -> None:
        super().__init__(config, model)
        step = config["lr_decay_epochs"]
        self.scheduler = None
        if step:
            from torch.optim.lr_scheduler import StepLR

            self.scheduler = StepLR(self.optimizer, step_size=int(step), gamma=float(config["lr_decay_gamma"]))
        # unique, so that concurrent runs (sweep trials) sharing a folder never overwrite each other
        name = f"{config['model']}-{config['dataset']}-{get_local_time()}-{uuid.uuid4().hex[:6]}.pth"
        self.saved_model_file = str(Path(self.checkpoint_dir) / name)
        self.last_valid_result: dict[str, float] = {}

    def _build_optimizer(self, **kwargs: Any) -> torch.optim.Optimizer:
        """RecBole's optimiser, except a ``fused_adam`` model's Adam (:func:`adam_options`); others as shipped."""
        if kwargs.get("learner", self.learner).lower() != "adam" or not adam_options(self.model):
            return super()._build_optimizer(**kwargs)
        params = kwargs.get("params", self.model.parameters())
        lr, decay = kwargs.get("learning_rate", self.learning_rate), kwargs.get("weight_decay", self.weight_decay)
        return torch.optim.Adam(params, lr=lr, weight_decay=decay, **adam_options(self.model))

    def _train_epoch(self, train_data: Any, epoch_idx: int, loss_func: Any = None, show_progress: bool = False):
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        if self.scheduler is not None:
            self.scheduler.step()
        return loss

    def _valid_epoch(self, valid_data: Any, show_progress: bool = False):
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        self.last_valid_result = dict(valid_result)
        return valid_score, valid_result

    def fit_with_callback(
        self, train_data: Any, valid_data: Any, saved: bool, epoch_callback: EpochCallback | None = None
    ) -> tuple[float, dict[str, float]]:
        """``fit`` whose callback receives each evaluation's full validation result."""

        def callback(epoch_idx: int, _valid_score: float) -> None:
            if epoch_callback is not None:
                epoch_callback(epoch_idx, self.last_valid_result)

        return self.fit(
            train_data,
            valid_data,
            saved=saved,
            show_progress=self.config["show_progress"],
            callback_fn=callback,
        )
