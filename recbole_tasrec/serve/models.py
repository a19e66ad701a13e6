"""Which served model an artefact or a checkpoint holds: one loader for the CLI and the HTTP service."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from recbole_tasrec.checkpoint import load_trusted
from recbole_tasrec.serve import artifact
from recbole_tasrec.serve.knn import KNN_MODELS, KNNRecommender
from recbole_tasrec.serve.recommender import SessionRecommender
from recbole_tasrec.serve.served import ServedModel

SERVED = {"TASRec": SessionRecommender, **dict.fromkeys(KNN_MODELS, KNNRecommender)}


def _served_class(model: str, source: Any) -> type:
    if model not in SERVED:
        raise ValueError(f"{source} holds a {model} model; the service serves {', '.join(SERVED)}")
    return SERVED[model]


def load_artifact(directory: str | os.PathLike[str], device: Any = "cpu") -> ServedModel:
    """The served model of a serving artefact (tensors and JSON only, no pickle)."""
    saved = artifact.read_artifact(directory)
    return _served_class(saved.meta["model"], directory).from_read(saved, Path(directory), device)


def load_checkpoint(path: str | os.PathLike[str]) -> ServedModel:
    """The served model of a checkpoint of this package (a pickle: only your own runs)."""
    model = str(load_trusted(path, ("config",))["config"]["model"])
    return _served_class(model, path).from_checkpoint(path)
