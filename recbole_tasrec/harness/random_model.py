"""An untrained TASRec, or a kNN model over random sessions, of any size, for load tests: random weights and
sessions cost the same to serve as trained ones."""

from __future__ import annotations

from typing import Any

import numpy as np

from recbole_tasrec.config import Config
from recbole_tasrec.data.clicks import DayClicks, transition_pairs
from recbole_tasrec.data.dataset import TEST, TRAIN
from recbole_tasrec.data.temporal_graph import TemporalGraph
from recbole_tasrec.model.session_knn import SessionIndex
from recbole_tasrec.serve import SessionRecommender
from recbole_tasrec.serve.artifact import serving_settings
from recbole_tasrec.serve.knn import SECONDS_PER_DAY, KNNRecommender


def random_recommender(
    n_items: int, days: int = 0, sessions_per_day: int = 5000, seed: int = 0, **settings: Any
) -> SessionRecommender:
    """An untrained TASRec over items ``item1..item{n_items-1}`` whose graph folded in ``days`` random days of
    ``sessions_per_day`` sessions (2..10 clicks each); ``settings`` are TASRec settings (e.g. ``embedding_size``)."""
    config = Config("TASRec", "sample", config_dict={"state": "WARNING", **settings})
    tokens = np.array(["[PAD]", *(f"item{i}" for i in range(1, n_items))])
    graph = TemporalGraph(n_items, float(config["decay"]), config["edge_weight"], float(config["prune_below"]))
    rng = np.random.default_rng(seed)
    for _ in range(days):
        lengths = rng.integers(2, 11, sessions_per_day)
        items = rng.integers(1, n_items, lengths.sum())
        graph.advance(*transition_pairs(np.repeat(np.arange(sessions_per_day), lengths), items))
    return SessionRecommender.from_state(config, tokens, None, graph=graph)


#: the slope of a real log's rank-frequency curve (Tmall: the item of rank ``r`` has about ``r ** -0.5`` of the
#: clicks; its top item 0.2% of them)
POPULARITY_EXPONENT = 0.5


def popular_items(rng: np.random.Generator, n_items: int, n: int, exponent: float = POPULARITY_EXPONENT) -> np.ndarray:
    """``n`` item ids in ``1..n_items-1``, item ``i`` drawn with probability proportional to ``i ** -exponent``."""
    weights = np.arange(1, n_items, dtype=np.float64) ** -exponent
    return 1 + np.searchsorted(np.cumsum(weights) / weights.sum(), rng.random(n), side="right").clip(max=n_items - 2)


def random_knn_recommender(
    n_items: int, n_sessions: int, model: str = "STAN", days: int = 30, seed: int = 0, **settings: Any
) -> KNNRecommender:
    """A kNN model (``STAN``, ``VSKNN``, ``SKNN``) over items ``item1..item{n_items-1}`` whose index holds
    ``n_sessions`` random sessions (1..10 clicks, items by :func:`popular_items`) spread over ``days`` days, the
    first 80% training; ``settings`` are the model's settings (e.g. ``sample_size``). Served at day ``days``."""
    config = Config(model, "sample", config_dict={"state": "WARNING", **settings})
    tokens = np.array(["[PAD]", *(f"item{i}" for i in range(1, n_items))])
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 11, n_sessions)
    session = np.repeat(np.arange(n_sessions), lengths)
    items = popular_items(rng, n_items, int(lengths.sum()))
    clicks = DayClicks(session=session, item=items, offsets=np.array([0, len(items)]))
    last_time = np.linspace(0, SECONDS_PER_DAY * days, n_sessions, endpoint=False)  # one after the other
    day = (last_time // SECONDS_PER_DAY).astype(np.int64)
    split = np.where(day < int(0.8 * days), TRAIN, TEST)
    index = SessionIndex.from_clicks(clicks, day, split, last_time, n_items)
    return KNNRecommender(tokens, serving_settings(config), index, days, float(last_time.max()))
