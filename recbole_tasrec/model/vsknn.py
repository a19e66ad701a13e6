r"""V-SKNN: vector-multiplication session-based kNN, with IDF-weighted scoring.

Reference:
    Malte Ludewig, Dietmar Jannach. "Evaluation of Session-based Recommendation Algorithms." User Modeling and
    User-Adapted Interaction 28(4-5), 2018 (section 3.2, "V-SKNN"); session-rec's ``VMContextKNN``.

The current session ``s = [i_1..i_l]`` is a real-valued vector whose items decay linearly with their distance
from the end; past sessions ``n`` are binary:

* ``w(i, s) = p(i, s) / l``, with ``p(i, s)`` the last 1-based position of ``i`` in ``s``;
* ``sim(s, n) = sum_{i in s ∩ n} w(i, s) / |s|`` (the dot product, over the distinct items ``|s|`` of ``s``);
* ``N_s``: the ``sample_size`` most recent sessions sharing an item with ``s``, then the ``k`` most similar;
* ``score(i, s) = sum_{n in N_s} sim(s, n) (1 + idf_weighting idf(i)) 1_n(i)``, with
  ``idf(i) = log(N / df(i))`` over the ``N`` training sessions, ``df(i)`` those containing ``i`` (at least 1).

Departures: the IDF table comes from the training split and stays fixed (session-rec computes it once at fit
time too), so streaming evaluation adds neighbours but never changes it; session-rec's optional extra score
decay by the position of the shared item (``weighting_score``) is not implemented; recency and which sessions
exist as in :mod:`~recbole_tasrec.model.sknn`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recbole_tasrec.data.dataset import TRAIN
from recbole_tasrec.model.session_knn import (
    CurrentSessions,
    NeighbourItems,
    Neighbours,
    NeighbourScoring,
    SessionIndex,
    SessionKNN,
)


class VSKNNScoring(NeighbourScoring):
    """V-SKNN's linear position weights, dot-product similarity and IDF factor."""

    def __init__(self, index: SessionIndex, k: int, sample_size: int, streaming: bool, idf_weighting: float) -> None:
        super().__init__(index, k, sample_size, streaming)
        if not np.isfinite(idf_weighting) or idf_weighting < 0:
            raise ValueError(f"idf_weighting must be a number >= 0 (0: no IDF factor), got {idf_weighting!r}")
        self.idf_weighting = float(idf_weighting)
        train = index.positions[index.split == TRAIN]
        df = np.bincount(train.indices, minlength=self.n_items)
        self.idf = np.log(max(train.shape[0], 1) / np.maximum(df, 1))

    def query_weights(self, current: CurrentSessions) -> np.ndarray:
        return current.position / current.length[current.row]

    def similarity(
        self, current: CurrentSessions, rows: np.ndarray, sessions: np.ndarray, dot: np.ndarray, day: np.ndarray
    ) -> np.ndarray:
        return dot / current.size[rows]

    def item_weights(self, neighbours: Neighbours, items: NeighbourItems, day: np.ndarray) -> np.ndarray:
        return 1.0 + self.idf_weighting * self.idf[items.item]


class VSKNN(SessionKNN):
    """V-SKNN (Ludewig and Jannach 2018); see the module docstring. Keys: ``k``, ``sample_size``,
    ``knn_streaming``, ``idf_weighting``."""

    def build_scoring(self, config: Any, index: SessionIndex, streaming: bool) -> NeighbourScoring:
        return VSKNNScoring(index, config["k"], config["sample_size"], streaming, float(config["idf_weighting"]))
