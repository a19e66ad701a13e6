"""Serving: next-item recommendations from a trained TASRec, kept current day by day (no retraining)."""

from recbole_tasrec.serve.recommender import SessionRecommender

__all__ = ["SessionRecommender"]
