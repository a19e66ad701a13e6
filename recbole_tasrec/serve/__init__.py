"""Serving: next-item recommendations from a trained TASRec, SKNN, V-SKNN or STAN, kept current day by day (no
retraining). Every model is a :class:`ServedModel`; :func:`load_artifact` reads any artefact."""

from recbole_tasrec.serve.knn import KNNRecommender
from recbole_tasrec.serve.models import load_artifact, load_checkpoint
from recbole_tasrec.serve.recommender import SessionRecommender
from recbole_tasrec.serve.served import DayAlreadyFolded, ServedModel

__all__ = [
    "DayAlreadyFolded",
    "KNNRecommender",
    "ServedModel",
    "SessionRecommender",
    "load_artifact",
    "load_checkpoint",
]
