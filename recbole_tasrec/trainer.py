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

from recbole.trainer import Trainer
from recbole.utils import get_local_time, set_color

from recbole_tasrec import resume
from recbole_tasrec.checkpoint import run_identity, save_atomically

EpochCallback = Callable[[int, dict[str, float]], None]
#: Counters a learning-rate schedule may keep on the trainer (the plateau schedule's), saved for ``--resume``.
SCHEDULE_COUNTERS = ("plateau_count", "optimizer_steps")


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
        self.identity: dict[str, Any] = run_identity(config)  # fit_with_callback adds the item mapping
        self._train_data: Any = None  # the loader whose generator a resume state captures; None: write none
        self._evaluated = False  # whether fit evaluates (then the callback writes the resume state)

    @property
    def resume_file(self) -> Path:
        """The last state of this run (:mod:`recbole_tasrec.resume`), next to its best-model checkpoint."""
        return resume.resume_file_for(self.saved_model_file)

    def schedule_state(self) -> dict[str, Any]:
        """The learning-rate schedule's own state: a torch scheduler's ``state_dict`` and the counters of
        :data:`SCHEDULE_COUNTERS` the trainer has (the rate itself is in the optimiser's param groups)."""
        state = {name: getattr(self, name) for name in SCHEDULE_COUNTERS if hasattr(self, name)}
        if getattr(self, "scheduler", None) is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def load_schedule_state(self, state: dict[str, Any]) -> None:
        for name in SCHEDULE_COUNTERS:
            if name in state:
                setattr(self, name, state[name])
        if getattr(self, "scheduler", None) is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])

    def resume(self, train_data: Any, resume_file: str | Path) -> None:
        """Continue the run whose resume state is ``resume_file`` (after the epoch it was written)."""
        self.identity = run_identity(self.config, train_data._dataset)
        resume.restore(self, train_data, resume_file)
        self.logger.info(f"Resumed from {resume_file}: training continues at epoch {self.start_epoch}")

    def training_finished(self) -> bool:
        """True when a resumed run had already trained all its epochs or stopped early."""
        return self.start_epoch >= self.epochs or self.cur_step > self.stopping_step

    def _add_train_loss_to_tensorboard(self, epoch_idx: int, losses: Any, tag: str = "Loss/Train") -> None:
        """Also the resume hook of an epoch without evaluation: ``fit`` calls it once the epoch's loss is in
        ``train_loss_dict`` (an evaluated epoch's state is written by the callback, after early stopping)."""
        super()._add_train_loss_to_tensorboard(epoch_idx, losses, tag=tag)
        if not (self._evaluated and (epoch_idx + 1) % self.eval_step == 0):
            self._write_resume_state(epoch_idx)

    def _write_resume_state(self, epoch_idx: int) -> None:
        """The state after epoch ``epoch_idx`` (:mod:`recbole_tasrec.resume`): RecBole keeps only the best model,
        a run resumes from its last. Written atomically, next to the checkpoint, for one-process runs that save."""
        if self._train_data is not None:
            resume.write(resume.capture(self, self._train_data, epoch_idx), self.resume_file)

    def _save_checkpoint(self, epoch: int, verbose: bool = True, **kwargs: Any) -> None:
        """RecBole's checkpoint, written atomically and with the run's identity."""
        target = kwargs.pop("saved_model_file", self.saved_model_file)
        state = {
            "config": self.config,
            "identity": self.identity,
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": self.best_valid_score,
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
        }
        save_atomically(state, target)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {target}")

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
        """``fit`` whose callback receives each evaluation's full validation result; the resume state is
        written after every epoch (before the callback, so a callback that raises leaves it behind)."""
        # one-process runs that save resume (issue 12's runs over several processes do not)
        self._train_data = train_data if saved and self.config["single_spec"] else None
        self.identity = run_identity(self.config, train_data._dataset)
        self._evaluated = self.eval_step > 0 and bool(valid_data)
        if self.training_finished():  # a resumed run that had ended: nothing to train, keep its best model
            return self.best_valid_score, self.best_valid_result

        def callback(epoch_idx: int, _valid_score: float) -> None:
            self._write_resume_state(epoch_idx)
            if epoch_callback is not None:
                epoch_callback(epoch_idx, self.last_valid_result)

        return self.fit(
            train_data,
            valid_data,
            saved=saved,
            show_progress=self.config["show_progress"],
            callback_fn=callback,
        )
