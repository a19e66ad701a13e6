"""Which served model an artefact or a checkpoint holds: one loader for the CLI and the HTTP service."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from recbole_tasrec.checkpoint import load_trusted
from recbole_tasrec.serve import artifact
from recbole_tasrec.serve.knn import KNN_MODELS, KNNRecommender
from recbole_tasrec.serve.recommender import SessionRecommender
from recbole_tasrec.serve.sequential import SEQUENTIAL_MODELS, NeuralRecommender
from recbole_tasrec.serve.served import ServedModel

SERVED = {
    "TASRec": SessionRecommender,
    **dict.fromkeys(KNN_MODELS, KNNRecommender),
    **dict.fromkeys(SEQUENTIAL_MODELS, NeuralRecommender),
}


def _served_class(model: str, source: Any) -> type:
    """The class serving ``model``; another RecBole sequential model is tried as a :class:`NeuralRecommender`
    (refused in one line when it reads more of its data set than the item count)."""
    if model in SERVED:
        return SERVED[model]
    try:
        from recbole.model.abstract_recommender import SequentialRecommender

        from recbole_tasrec.config import get_model

        if issubclass(get_model(model), SequentialRecommender):
            return NeuralRecommender
    except ValueError:
        pass
    raise ValueError(f"{source} holds a {model} model; the service serves {', '.join(SERVED)} and RecBole's other "
                     "sequential models")  # fmt: skip


def load_artifact(directory: str | os.PathLike[str], device: Any = "cpu") -> ServedModel:
    """The served model of a serving artefact (tensors and JSON only, no pickle)."""
    saved = artifact.read_artifact(directory)
    return _served_class(saved.meta["model"], directory).from_read(saved, Path(directory), device)


def load_checkpoint(path: str | os.PathLike[str]) -> ServedModel:
    """The served model of a checkpoint of this package (a pickle: only your own runs)."""
    model = str(load_trusted(path, ("config",))["config"]["model"])
    return _served_class(model, path).from_checkpoint(path)
