r"""STAN: Sequence and Time Aware Neighbourhood.

Reference:
    Diksha Garg, Priyanka Gupta, Pankaj Malhotra, Lovekesh Vig, Gautam Shroff. "Sequence and Time Aware
    Neighborhood for Session-based Recommendations: STAN." SIGIR 2019; session-rec's ``STAN``.

With ``s = [i_1..i_l]`` the current session, ``p(i, s)`` the last 1-based position of ``i`` in ``s`` and ``n`` a
past session:

* factor 1, position in the current session: ``w1(i, s) = exp((p(i, s) - l) / lambda_1)``, the weights of the
  current session's vector; ``sim1(s, n) = sum_{i in s ∩ n} w1(i, s) / (||w1(s)|| sqrt(|n|))``, the cosine of the
  weighted current vector and the binary neighbour (``||w1(s)||`` the Euclidean norm over the distinct items);
* factor 2, recency of the neighbour: ``sim2(s, n) = sim1(s, n) exp(-(t(s) - t(n)) / (86400 lambda_2))``, with
  ``t(s)`` the time of the current session's last click and ``t(n)`` of the neighbour's last click, in seconds,
  as the paper has it (``lambda_2`` in days, as session-rec states it); ``N_s``: the ``sample_size`` most recent
  sessions sharing an item with ``s`` (by their last click), then the ``k`` largest ``sim2``;
* factor 3, position in the neighbour: ``w3(i | s, n) = exp(-|p(i, n) - a(s, n)| / lambda_3)``, with ``a(s, n)`` the
  anchor of ``item_anchor``: ``last_shared`` (session-rec, the default) the last position in ``n`` of an item that
  ``s`` holds; ``most_recent`` (the paper's ``p(inn(s, n), n)``) the position in ``n`` of the most recent item of
  ``s`` that ``n`` holds. They differ when ``n`` holds the current session's items in another order;
* ``score(i, s) = sum_{n in N_s} sim2(s, n) w3(i | s, n) 1_n(i)``.

Departures: ``t(s) - t(n)`` is floored at 0 (a neighbour of an earlier day may still be running when the current
click happens; session-rec never meets that, its neighbours all end before the test starts); ``t(s)`` comes from
RecBole's float32 time list (about 128 s apart, nothing against a decay of days); ``|n|`` counts distinct items,
repeated items take their last position; items of ``s`` stay recommendable (session-rec's ``remind=True``). The
current session is the prefix RecBole feeds every model (the last ``MAX_ITEM_LIST_LENGTH`` clicks); which sessions
exist: ``knn_streaming``, as in :mod:`~recbole_tasrec.model.session_knn`.
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
    check_choice,
)

SECONDS_PER_DAY = 86400.0
ANCHORS = {"last_shared": NeighbourItems.last_shared_position, "most_recent": NeighbourItems.reference_position}


class STANScoring(NeighbourScoring):
    """STAN's three factors on the shared neighbour search."""

    def __init__(
        self,
        index: SessionIndex,
        k: int,
        sample_size: int,
        streaming: bool,
        lambdas: tuple[float, float, float],
        item_anchor: str = "last_shared",
    ) -> None:
        super().__init__(index, k, sample_size, streaming)
        for name, value in zip(("lambda_1", "lambda_2", "lambda_3"), lambdas, strict=True):
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number (a decay length), got {value!r}")
        self.lambda_1, self.lambda_2, self.lambda_3 = (float(value) for value in lambdas)
        self.anchor = ANCHORS[check_choice("item_anchor", item_anchor, ANCHORS)]

    def query_weights(self, current: CurrentSessions) -> np.ndarray:
        return np.exp((current.position - current.length[current.row]) / self.lambda_1)

    def similarity(
        self, current: CurrentSessions, rows: np.ndarray, sessions: np.ndarray, dot: np.ndarray
    ) -> np.ndarray:
        norm = np.sqrt(
            np.bincount(current.row, weights=self.query_weights(current) ** 2, minlength=len(current.length))
        )
        cosine = dot / (norm[rows] * np.sqrt(self.index.size[sessions]))
        elapsed = np.maximum(current.time[rows] - self.index.last_time[sessions], 0.0)
        return cosine * np.exp(-elapsed / (SECONDS_PER_DAY * self.lambda_2))

    def item_weights(self, current: CurrentSessions, neighbours: Neighbours, items: NeighbourItems) -> np.ndarray:
        anchor = self.anchor(items, len(neighbours.row))[items.pair]
        return np.exp(-np.abs(items.position - anchor) / self.lambda_3)


class STAN(SessionKNN):
    """STAN (Garg et al. 2019); see the module docstring. Keys: ``k``, ``sample_size``, ``knn_streaming``,
    ``lambda_1``, ``lambda_2``, ``lambda_3``, ``item_anchor``."""

    def build_scoring(self, config: Any, index: SessionIndex, streaming: bool) -> NeighbourScoring:
        lambdas = (float(config["lambda_1"]), float(config["lambda_2"]), float(config["lambda_3"]))
        return STANScoring(
            index, config["k"], config["sample_size"], streaming, lambdas, item_anchor=str(config["item_anchor"])
        )
