"""Serving: next-item recommendations from any model the runner trains (TASRec, RecBole's sequential models, LESSR,
CSRM, SKNN, V-SKNN, STAN), kept current day by day. Every model is a :class:`ServedModel`; :func:`load_artifact`
reads any artefact; an advance can train a neural model's weights on the day (:class:`TrainOptions`)."""

from recbole_tasrec.serve.day_training import TrainOptions
from recbole_tasrec.serve.knn import KNNRecommender
from recbole_tasrec.serve.models import load_artifact, load_checkpoint
from recbole_tasrec.serve.recommender import SessionRecommender
from recbole_tasrec.serve.sequential import NeuralRecommender
from recbole_tasrec.serve.served import DayAlreadyFolded, ServedModel

__all__ = [
    "DayAlreadyFolded",
    "KNNRecommender",
    "NeuralRecommender",
    "ServedModel",
    "SessionRecommender",
    "TrainOptions",
    "load_artifact",
    "load_checkpoint",
]
