r"""STAN: Sequence and Time Aware Neighbourhood.

Reference:
    Diksha Garg, Priyanka Gupta, Pankaj Malhotra, Lovekesh Vig, Gautam Shroff. "Sequence and Time Aware
    Neighborhood for Session-based Recommendations: STAN." SIGIR 2019.

With ``s = [i_1..i_l]`` the current session, ``p(i, s)`` the last 1-based position of ``i`` in ``s`` and ``n`` a
past session:

* factor 1, position in the current session: ``w1(i, s) = exp((p(i, s) - l) / lambda_1)``, the weights of the
  current session's vector; ``sim1(s, n) = sum_{i in s ∩ n} w1(i, s) / sqrt(|s| |n|)``;
* factor 2, recency of the neighbour: ``sim2(s, n) = sim1(s, n) exp(-(t(s) - t(n)) / lambda_2)``;
  ``N_s``: the ``sample_size`` most recent sessions sharing an item with ``s``, then the ``k`` largest ``sim2``;
* factor 3, position in the neighbour: ``w3(i | s, n) = exp(-|p(i, n) - p(inn(s, n), n)| / lambda_3)``, with
  ``inn(s, n)`` the most recent item of ``s`` that ``n`` contains;
* ``score(i, s) = sum_{n in N_s} sim2(s, n) w3(i | s, n) 1_n(i)``.

Recency here: ``t`` is the day index of the data set (``dataset.day_field``, blocks of ``day_span`` calendar
days), the sample's day for ``s`` and the day of its first click for ``n``; ``lambda_2`` is in those days.
Per-click timestamps exist only as float32 (about 128 s resolution) and not for the index's sessions, while the
day is exact and is what TASRec's streaming protocol is built on. ``|s|``, ``|n|`` count distinct items (the norms
of the binary vectors); repeated items take their last position. Items of ``s`` stay recommendable (session-rec's
``remind=True``). Which sessions exist: ``knn_streaming``, as in :mod:`~recbole_tasrec.model.session_knn`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recbole_tasrec.model.session_knn import (
    CurrentSessions,
    NeighbourItems,
    Neighbours,
    NeighbourScoring,
    SessionIndex,
    SessionKNN,
)


class STANScoring(NeighbourScoring):
    """STAN's three factors on the shared neighbour search."""

    def __init__(
        self, index: SessionIndex, k: int, sample_size: int, streaming: bool, lambdas: tuple[float, float, float]
    ) -> None:
        super().__init__(index, k, sample_size, streaming)
        for name, value in zip(("lambda_1", "lambda_2", "lambda_3"), lambdas, strict=True):
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number (a decay length), got {value!r}")
        self.lambda_1, self.lambda_2, self.lambda_3 = (float(value) for value in lambdas)

    def query_weights(self, current: CurrentSessions) -> np.ndarray:
        return np.exp((current.position - current.length[current.row]) / self.lambda_1)

    def similarity(
        self, current: CurrentSessions, rows: np.ndarray, sessions: np.ndarray, dot: np.ndarray, day: np.ndarray
    ) -> np.ndarray:
        cosine = super().similarity(current, rows, sessions, dot, day)
        return cosine * np.exp(-(day[rows] - self.index.day[sessions]) / self.lambda_2)

    def item_weights(self, neighbours: Neighbours, items: NeighbourItems, day: np.ndarray) -> np.ndarray:
        reference = items.reference_position(len(neighbours.row))[items.pair]
        return np.exp(-np.abs(items.position - reference) / self.lambda_3)


class STAN(SessionKNN):
    """STAN (Garg et al. 2019); see the module docstring. Keys: ``k``, ``sample_size``, ``knn_streaming``,
    ``lambda_1``, ``lambda_2``, ``lambda_3``."""

    def build_scoring(self, config: Any, index: SessionIndex, streaming: bool) -> NeighbourScoring:
        lambdas = (float(config["lambda_1"]), float(config["lambda_2"]), float(config["lambda_3"]))
        return STANScoring(index, config["k"], config["sample_size"], streaming, lambdas)
