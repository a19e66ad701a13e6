"""An untrained TASRec of any size, for load tests: random weights cost the same to serve as trained ones."""

from __future__ import annotations

from typing import Any

import numpy as np

from recbole_tasrec.config import Config
from recbole_tasrec.data.clicks import transition_pairs
from recbole_tasrec.data.temporal_graph import TemporalGraph
from recbole_tasrec.serve import SessionRecommender


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
