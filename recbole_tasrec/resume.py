"""Resumable training: the state of a run after its last finished epoch, captured and restored.

RecBole saves the *best* model, on improvement only, and its ``resume_checkpoint`` restores neither the
random state nor the data loader's shuffling nor the early-stopping result, so a resumed run diverges from
an uninterrupted one. :class:`~recbole_tasrec.trainer.TASRecTrainer` writes the *last* state after every
epoch next to its checkpoint (``<checkpoint>.resume``, atomically); restoring it continues the run exactly:
same seed, same data, same thread count -> the same weights and metrics as a run never interrupted.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recbole_tasrec.checkpoint import PathLike, load_trusted, save_atomically

#: Appended to a checkpoint's name for its resume state (not ``.pth``: sweeps find checkpoints by ``*.pth``).
RESUME_SUFFIX = ".resume"


def resume_file_for(checkpoint: PathLike) -> Path:
    """Where the resume state of the run whose best model is ``checkpoint`` lives."""
    return Path(f"{checkpoint}{RESUME_SUFFIX}")


def find_resume_file(path: PathLike) -> Path:
    """The resume state for ``--resume PATH``: PATH itself (``*.resume``) or the one next to checkpoint PATH."""
    given = Path(path)
    resume_file = given if given.name.endswith(RESUME_SUFFIX) else resume_file_for(given)
    if not resume_file.is_file():
        raise FileNotFoundError(
            f"no resume state at {resume_file}: --resume takes the checkpoint (.pth) of an interrupted run, or "
            f"its {RESUME_SUFFIX} file next to it; runs write one after every epoch"
        )
    return resume_file


def capture_rng(train_data: Any) -> dict[str, Any]:
    """Every random state an epoch draws from: Python, numpy, torch (and CUDA), the train loader's generator."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "loader": train_data.generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], train_data: Any) -> None:
    """Inverse of :func:`capture_rng`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    train_data.generator.set_state(state["loader"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def capture(trainer: Any, train_data: Any, epoch_idx: int) -> dict[str, Any]:
    """The training state of ``trainer`` after epoch ``epoch_idx``, whose training data is ``train_data``."""
    return {
        "identity": trainer.identity,
        "epoch": epoch_idx,
        "state_dict": trainer.model.state_dict(),
        "other_parameter": trainer.model.other_parameter(),
        "optimizer": trainer.optimizer.state_dict(),
        "schedule": trainer.schedule_state(),
        "cur_step": trainer.cur_step,
        "best_valid_score": trainer.best_valid_score,
        "best_valid_result": trainer.best_valid_result,
        "train_loss_dict": dict(trainer.train_loss_dict),
        "rng": capture_rng(train_data),
    }


def write(state: dict[str, Any], path: PathLike) -> None:
    """Write a captured state atomically (an interruption while writing keeps the previous epoch's)."""
    save_atomically(state, path)


def restore(trainer: Any, train_data: Any, path: PathLike) -> dict[str, Any]:
    """Load the resume state at ``path`` into ``trainer`` (built for the same run) and return it.

    Refuses (:class:`~recbole_tasrec.checkpoint.CheckpointMismatchError`) a state of another model, data set
    or item mapping. The trainer's best-model checkpoint becomes the one next to ``path``.
    """
    # a best-model checkpoint lacks "rng"
    state = load_trusted(path, required=("identity", "epoch", "rng"), expected=trainer.identity)
    trainer.model.load_state_dict(state["state_dict"])
    trainer.model.load_other_parameter(state["other_parameter"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.load_schedule_state(state["schedule"])
    trainer.start_epoch = state["epoch"] + 1
    trainer.cur_step = state["cur_step"]
    trainer.best_valid_score = state["best_valid_score"]
    trainer.best_valid_result = state["best_valid_result"]
    trainer.train_loss_dict = dict(state["train_loss_dict"])
    trainer.saved_model_file = str(path)[: -len(RESUME_SUFFIX)]
    restore_rng(state["rng"], train_data)
    return state
