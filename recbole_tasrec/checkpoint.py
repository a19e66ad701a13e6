"""Checkpoint files that are written whole and load only into the run they belong to.

RecBole writes its checkpoint with a plain ``torch.save`` (an interruption leaves a truncated file under the
final name) and loads any checkpoint into any model whose tensor shapes happen to fit: a model trained on
another data set, or on the same data set with another item numbering, then recommends the wrong items
without an error. Here a checkpoint carries the identity of its run (model, data set, the data-set keys
of its config, the item tokens) and every loader compares it with the run at hand.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from recbole_tasrec.data.dataset import DATA_SET_KEYS
from recbole_tasrec.safe_write import save_torch

PathLike = str | os.PathLike[str]


class CheckpointError(ValueError):
    """A file given as a checkpoint cannot be used; the message says why and what to give instead."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint belongs to another model, data set or item mapping; the message says which."""


#: The checkpoint writer of the trainer, rank 0 of a distributed run and the resume state: ``torch.save`` through
#: the crash-safe writer (an interruption never leaves a truncated checkpoint, a full disk is one line).
save_atomically = save_torch


def load_trusted(
    path: PathLike, required: tuple[str, ...] = ("state_dict",), *, expected: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Load a checkpoint written by this package, holding at least the ``required`` keys; with ``expected`` (a
    :func:`run_identity`), refuse one of another run (:class:`CheckpointMismatchError`). The one loader of the
    package's checkpoints and resume files. It unpickles (the config, random states): only load files you trust
    (serving artefacts, ``python -m recbole_tasrec.serve export``, are the safe format)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: give the .pth file a run wrote (under checkpoint_dir)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated, not a torch file, written by an incompatible version
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}: {reason})") from err
    missing = [key for key in required if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path} is not a checkpoint of the kind expected here: it lacks {missing}")
    if expected is not None:
        check_identity(expected, checkpoint_identity(checkpoint), path)
    return checkpoint


def item_digest(dataset: Any) -> str:
    """SHA-256 of the data set's item tokens in id order: equal digests mean the same item mapping."""
    return tokens_digest(dataset.field2id_token[dataset.iid_field])


def tokens_digest(tokens: Any) -> str:
    """SHA-256 of item tokens in id order (what :func:`item_digest` stores)."""
    return hashlib.sha256("\n".join(map(str, tokens)).encode()).hexdigest()


def run_identity(config: Any, dataset: Any | None = None) -> dict[str, Any]:
    """What a checkpoint must share with a run to load into it; ``dataset`` adds the item mapping."""
    identity: dict[str, Any] = {
        "model": config["model"],
        "dataset": config["dataset"],
        "dataset_config": {key: config[key] for key in DATA_SET_KEYS if key in config},
    }
    if dataset is not None:
        identity.update(n_items=int(dataset.item_num), item_digest=item_digest(dataset))
    return identity


def checkpoint_identity(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The identity stored in a checkpoint; for files written before it was stored, what its config gives."""
    return checkpoint.get("identity") or run_identity(checkpoint["config"])


def check_identity(expected: dict[str, Any], found: dict[str, Any], source: PathLike) -> None:
    """Raise :class:`CheckpointMismatchError` naming what differs between a run and the checkpoint ``source``.

    Keys missing on either side (an older checkpoint) are not compared."""
    problems = [
        f"{key}: the run has {expected[key]!r}, the checkpoint {found[key]!r}"
        for key in ("model", "dataset", "n_items")
        if key in expected and key in found and expected[key] != found[key]
    ]
    ours, theirs = expected.get("dataset_config", {}), found.get("dataset_config", {})
    problems += [
        f"data set key {key}: the run has {ours[key]!r}, the checkpoint {theirs[key]!r}"
        for key in sorted(ours.keys() & theirs.keys())
        if ours[key] != theirs[key]
    ]
    digests = expected.get("item_digest"), found.get("item_digest")
    if not problems and None not in digests and digests[0] != digests[1]:
        problems.append("item mapping: the same number of items, but other item tokens or another order")
    if problems:
        raise CheckpointMismatchError(
            f"the checkpoint {source} belongs to another run ("
            + "; ".join(problems)
            + "): give a checkpoint of this model and data set, or the settings it was trained with"
        )
