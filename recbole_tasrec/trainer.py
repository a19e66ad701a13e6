"""RecBole's ``Trainer`` with a learning-rate schedule and what sweeps need.

RecBole's Trainer has no scheduler. The paper (3.1) decays Adam's rate "after two epochs", as SR-GNN does
(x0.1 every 2 epochs): on a small log that stops learning early (benchmarks/results/schedules/summary.md;
docs/model.md, Training), so the default here decays on a validation plateau instead, which adapts to any data size; the
paper's schedule stays selectable. The trainer also names checkpoints uniquely (two trials of a sweep collide
on RecBole's to-the-second names), hands ``fit``'s callback the full validation result, not only the score,
writes its tensorboard run into the run folder and loads checkpoints through this package's loader
(``docs/recbole-fixes.md``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from recbole.trainer import Trainer
from recbole.utils import get_local_time, set_color

from recbole_tasrec import resume, run_folder
from recbole_tasrec.checkpoint import load_trusted, run_identity, save_atomically
from recbole_tasrec.chunked_eval import chunked_full_sort, uses_chunks
from recbole_tasrec.lazy_adam import LazyAdam

EpochCallback = Callable[[int, dict[str, float]], None]
#: Counters a learning-rate schedule may keep on the trainer (the plateau schedule's), saved for ``--resume``.
SCHEDULE_COUNTERS = ("plateau_count", "optimizer_steps")


def adam_options(model: Any) -> dict[str, Any]:
    """Extra ``torch.optim.Adam`` arguments for ``model``: models with ``fused_adam = True`` (TASRec) get the
    fused kernel, the same update in one pass over all parameters (benchmarks/README.md, change 2)."""
    return {"fused": True} if getattr(model, "fused_adam", False) else {}


def cpu_copy(value: Any) -> Any:
    """``value`` (nested dicts, lists and tuples of tensors) with every tensor copied to the CPU: a copy that
    later training steps, which update tensors in place, cannot change."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: cpu_copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(cpu_copy(item) for item in value)
    return value


class ScheduledTrainer(Trainer):
    """``Trainer`` + a learning-rate schedule (``lr_scheduler``) + per-epoch validation callback.

    Used by :func:`recbole_tasrec.run_recbole_tasrec` for every model, so baselines get the same schedule.

    - ``plateau`` (default): the rate times ``lr_decay_gamma`` after ``lr_patience`` evaluations in a row
      without improvement of ``valid_metric`` (ties count as improvement, as in RecBole's early stopping),
      never below ``min_lr``, and not before ``lr_decay_min_steps`` training batches. With ``lr_restore_best``
      each decay first puts back the weights and the Adam state of the best evaluation so far
      (:meth:`restore_best`): the lower rate continues from the best point, not from the epochs that fell.
    - ``paper``: times ``lr_decay_gamma`` every ``lr_decay_epochs`` epochs (SR-GNN's StepLR).
    - ``constant``: no decay.

    A model with ``trains = False`` (the nearest-neighbour baselines: nothing to learn) gets one epoch and no
    schedule, as RecBole's ``TraditionalTrainer`` does for its non-neural models.
    """

    def __init__(self, config: Any, model: Any) -> None:
        # made here, exist_ok: RecBole's check-then-create (utils/utils.py:44) races when several processes start
        Path(config["checkpoint_dir"]).mkdir(parents=True, exist_ok=True)
        with run_folder.inside(config):  # RecBole's get_tensorboard makes a relative log_tensorboard/<run>
            super().__init__(config, model)
            self.tensorboard = run_folder.absolute_writer(self.tensorboard)
        if getattr(model, "trains", True):
            self.lr_scheduler = config["lr_scheduler"]  # checked with the other settings (recbole_tasrec.settings)
        else:
            self.lr_scheduler, self.epochs = "constant", 1
        self.lr_decay_gamma = float(config["lr_decay_gamma"])
        self.lr_decay_epochs = int(config["lr_decay_epochs"])
        self.lr_patience = int(config["lr_patience"])
        self.min_lr = float(config["min_lr"])
        self.lr_decay_min_steps = int(config["lr_decay_min_steps"])
        self.lr_restore_best = bool(config["lr_restore_best"]) and self.lr_scheduler == "plateau"
        self.best_state: dict[str, Any] | None = None  # lr_restore_best: a CPU copy of the best evaluation's state
        self.plateau_count = 0
        self.optimizer_steps = 0  # batches trained so far: no plateau decay before lr_decay_min_steps
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
        if self.lr_restore_best and Path(self.saved_model_file).is_file():
            # the best evaluation's state is the best-model checkpoint (written at every improvement, as the
            # in-memory copy is), so the resume file need not hold a second copy
            best = load_trusted(self.saved_model_file, required=("state_dict", "optimizer"), expected=self.identity)
            self.best_state = {key: best.get(key) for key in self.training_state()}  # loaded onto the CPU
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

    @property
    def learning_rates(self) -> list[float]:
        """The optimiser's current rate of each parameter group."""
        return [float(group["lr"]) for group in self.optimizer.param_groups]

    def decay_learning_rate(self) -> None:
        """Multiply every group's rate by ``lr_decay_gamma``, not below ``min_lr``."""
        for group in self.optimizer.param_groups:
            group["lr"] = max(group["lr"] * self.lr_decay_gamma, self.min_lr)
        self.logger.info(f"learning rate decayed to {self.learning_rates[0]:.3g} ({self.lr_scheduler} schedule)")

    def _build_optimizer(self, **kwargs: Any) -> torch.optim.Optimizer:
        """RecBole's optimiser, except a ``fused_adam`` model's Adam (:func:`adam_options`); others as shipped."""
        if kwargs.get("learner", self.learner).lower() != "adam" or not adam_options(self.model):
            return super()._build_optimizer(**kwargs)
        params = kwargs.get("params", self.model.parameters())
        lr, decay = kwargs.get("learning_rate", self.learning_rate), kwargs.get("weight_decay", self.weight_decay)
        if getattr(self.model, "lazy_adam", False):  # lazy_adam: sparse item rows (recbole_tasrec/lazy_adam.py)
            return LazyAdam(params, lr=lr, weight_decay=decay)
        return torch.optim.Adam(params, lr=lr, weight_decay=decay, **adam_options(self.model))

    def evaluate(
        self, eval_data: Any, load_best_model: bool = True, model_file: str | None = None, show_progress: bool = False
    ) -> Any:
        """RecBole's ``evaluate``, the best model loaded by :func:`~recbole_tasrec.checkpoint.load_trusted`
        (RecBole's ``torch.load`` fails on torch >= 2.6: trainer/trainer.py:583)."""
        if load_best_model and eval_data:
            checkpoint_file = model_file or self.saved_model_file
            checkpoint = load_trusted(checkpoint_file)
            self.model.load_state_dict(checkpoint["state_dict"])
            self.model.load_other_parameter(checkpoint.get("other_parameter"))
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)

    def _train_epoch(self, train_data: Any, epoch_idx: int, loss_func: Any = None, show_progress: bool = False):
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        self.optimizer_steps += len(train_data)
        if self.lr_scheduler == "paper" and (epoch_idx + 1) % self.lr_decay_epochs == 0:
            self.decay_learning_rate()
        return loss

    def _full_sort_batch_eval(self, batched_data: Any):
        """RecBole's, or with ``eval_item_chunk`` the same metrics from bounded score blocks (chunked_eval)."""
        chunk = uses_chunks(self.config, self.eval_collector)
        if not chunk:
            return super()._full_sort_batch_eval(batched_data)
        k = max(self.config["topk"])
        return chunked_full_sort(self.model, batched_data, self.tot_item_num, k, chunk, self.device)

    def _valid_epoch(self, valid_data: Any, show_progress: bool = False):
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        self.last_valid_result = dict(valid_result)
        if self.lr_scheduler == "plateau":
            self.plateau_step(float(valid_score))
        return valid_score, valid_result

    def plateau_step(self, valid_score: float) -> None:
        """Count evaluations without improvement over the best so far (before ``fit`` updates it); decay after
        ``lr_patience`` of them, once ``lr_decay_min_steps`` batches have trained (a small log's flat first
        epochs are not a plateau: RecBole's SRGNN sat flat for 5 epochs of 7 batches on the Diginetica sample).
        With ``lr_restore_best``, an improvement refreshes the copy of the best state and a decay restores it.

        Every rank of a run over several processes takes the same branch (the gathered metrics give each the same
        score) and holds the same weights (DDP), so each restores the same state without communicating."""
        best = self.best_valid_score
        improved = valid_score >= best if self.valid_metric_bigger else valid_score <= best
        self.plateau_count = 0 if improved else self.plateau_count + 1
        if improved and self.lr_restore_best:
            self.best_state = cpu_copy(self.training_state())
        if self.plateau_count >= self.lr_patience and self.optimizer_steps >= self.lr_decay_min_steps:
            if self.lr_restore_best:
                self.restore_best()
            self.decay_learning_rate()
            self.plateau_count = 0

    def training_state(self) -> dict[str, Any]:
        """What training continues from: the weights, the model's other parameters and the optimiser's state
        (the keys of a best-model checkpoint, so that one can stand in for it after ``--resume``)."""
        return {
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
        }

    def restore_best(self) -> None:
        """Put back the weights and Adam's moments of the best evaluation, keeping the current rate.

        Adam's moments are restored with the weights rather than reset: they were accumulated along the path to
        those weights, so training continues as if the decay had come right after the best epoch; a fresh state
        would restart Adam's bias correction, whose first steps move every touched row by about the full rate.
        """
        if self.best_state is None:  # no evaluation improved yet (a resumed run whose checkpoint is gone)
            self.logger.warning("lr_restore_best: no best state to restore; the rate decays from the last weights")
            return
        rates = self.learning_rates
        self.model.load_state_dict(self.best_state["state_dict"])
        self.model.load_other_parameter(self.best_state.get("other_parameter"))
        self.optimizer.load_state_dict(self.best_state["optimizer"])
        for group, rate in zip(self.optimizer.param_groups, rates, strict=True):
            group["lr"] = rate
        self.logger.info("learning rate decay: weights and optimiser state of the best evaluation restored")

    def fit_with_callback(
        self, train_data: Any, valid_data: Any, saved: bool, epoch_callback: EpochCallback | None = None
    ) -> tuple[float, dict[str, float]]:
        """``fit`` whose callback receives each evaluation's full validation result; the resume state is
        written after every epoch (before the callback, so a callback that raises leaves it behind)."""
        # one-process runs that save resume (runs over several processes do not)
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


#: The name this trainer had when only TASRec used it.
TASRecTrainer = ScheduledTrainer
