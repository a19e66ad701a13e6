r"""V-SKNN: vector-multiplication session-based kNN, as session-rec's ``VMContextKNN``.

Reference:
    Malte Ludewig, Dietmar Jannach. "Evaluation of Session-based Recommendation Algorithms." User Modeling and
    User-Adapted Interaction 28(4-5), 2018 (section 3.2, "V-SKNN"); session-rec's ``VMContextKNN``.

The current session ``s = [i_1..i_l]`` is a real-valued vector whose items decay with their distance from the
end; past sessions ``n`` are binary. With ``p(i, s)`` the last 1-based position of ``i`` in ``s``:

* ``w(i, s) = weighting(p(i, s), l)``;
* ``sim(s, n) = sum_{i in s ∩ n} w(i, s) / |s|`` (the dot product over the distinct items ``|s|`` of ``s``);
* ``N_s``: the ``sample_size`` most recent sessions sharing an item with ``s`` (by their last click), then the
  ``k`` most similar;
* ``j(s, n) = l - max_{i in s ∩ n} p(i, s) + 1``: how many clicks back ``s`` last touched ``n`` (1: its last click);
* ``score(i, s) = sum_{n in N_s} sim(s, n) (1 + idf_weighting idf(i)) weighting_score(j(s, n)) 1_n(i)``, with
  ``idf(i) = ln(N / c(i))``, ``N`` the training sessions and ``c(i)`` the training clicks on ``i`` (clicks, not
  sessions, as session-rec counts them).

``weighting`` (``p`` the position, ``l`` the length): ``same`` 1, ``div`` ``p / l``, ``linear``
``max(0, 1 - 0.1 (l - p))``, ``quadratic`` ``(p / l)^2``, ``log`` ``1 / log10(l - p + 1.7)``. ``weighting_score``
(``j`` the step back): ``same`` 1, ``div`` ``1 / j``, ``linear`` ``max(0, 1 - 0.1 j)``, ``quadratic`` ``1 / j^2``,
``log`` ``1 / log10(j + 1.7)``. Defaults are session-rec's: ``div`` and ``div``, no IDF (``idf_weighting`` 0).

Departures, each kept on purpose:

* ``linear``: session-rec gives a click weight 0 from the 11th position of the session on (its ``i <= 10`` test
  looks at the position, not the distance from the end) and lets both ``linear`` weights go negative; here both
  are ``1 - 0.1 x`` floored at 0, the decay the name describes, since the literal form zeroes the latest clicks
  of every long session.
* An item with no training click (it reaches the index through a validation or test session when
  ``knn_streaming`` is on) gets ``idf`` 0, the neutral value session-rec itself uses for unknown items in its
  session-side IDF, rather than the largest IDF of all; the IDF table comes from the training split and stays
  fixed, as session-rec computes it once at fit time.
* The current session is the prefix RecBole feeds every model (the last ``MAX_ITEM_LIST_LENGTH`` clicks).
* Which sessions exist is this package's protocol (``knn_streaming``, see :mod:`~recbole_tasrec.model.session_knn`).
* session-rec's final division of the scores by their maximum changes no ranking and is left out.
"""

from __future__ import annotations

from collections.abc import Callable
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
    check_choice,
)

# weight of a current-session click at 1-based position p of a session of n clicks (session-rec's `weighting`)
POSITION_WEIGHTS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "same": lambda p, n: np.ones_like(p, dtype=np.float64),
    "div": lambda p, n: p / n,
    "linear": lambda p, n: np.maximum(1.0 - 0.1 * (n - p), 0.0),
    "quadratic": lambda p, n: (p / n) ** 2,
    "log": lambda p, n: 1.0 / np.log10(n - p + 1.7),
}
# decay of a neighbour's scores when the current session last touched it j >= 1 clicks back (`weighting_score`)
STEP_WEIGHTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "same": lambda j: np.ones_like(j, dtype=np.float64),
    "div": lambda j: 1.0 / j,
    "linear": lambda j: np.maximum(1.0 - 0.1 * j, 0.0),
    "quadratic": lambda j: 1.0 / j**2,
    "log": lambda j: 1.0 / np.log10(j + 1.7),
}


class VSKNNScoring(NeighbourScoring):
    """V-SKNN's position weights, dot-product similarity, IDF factor and score decay."""

    def __init__(
        self,
        index: SessionIndex,
        k: int,
        sample_size: int,
        streaming: bool,
        idf_weighting: float,
        weighting: str = "div",
        weighting_score: str = "div",
    ) -> None:
        super().__init__(index, k, sample_size, streaming)
        if not np.isfinite(idf_weighting) or idf_weighting < 0:
            raise ValueError(f"idf_weighting must be a number >= 0 (0: no IDF factor), got {idf_weighting!r}")
        self.idf_weighting = float(idf_weighting)
        self.position_weight = POSITION_WEIGHTS[check_choice("weighting", weighting, POSITION_WEIGHTS)]
        self.step_weight = STEP_WEIGHTS[check_choice("weighting_score", weighting_score, STEP_WEIGHTS)]
        n_train = int(np.count_nonzero(index.split == TRAIN))
        clicks = index.train_clicks
        self.idf = np.where(clicks > 0, np.log(max(n_train, 1) / np.maximum(clicks, 1)), 0.0)

    def query_weights(self, current: CurrentSessions) -> np.ndarray:
        return self.position_weight(current.position.astype(np.float64), current.length[current.row])

    def similarity(
        self, current: CurrentSessions, rows: np.ndarray, sessions: np.ndarray, dot: np.ndarray
    ) -> np.ndarray:
        return dot / current.size[rows]

    def item_weights(self, current: CurrentSessions, neighbours: Neighbours, items: NeighbourItems) -> np.ndarray:
        step = current.length[neighbours.row] - items.latest_shared_query_position(len(neighbours.row)) + 1
        return (1.0 + self.idf_weighting * self.idf[items.item]) * self.step_weight(step)[items.pair]


class VSKNN(SessionKNN):
    """V-SKNN (Ludewig and Jannach 2018); see the module docstring. Keys: ``k``, ``sample_size``,
    ``knn_streaming``, ``weighting``, ``weighting_score``, ``idf_weighting``."""

    def build_scoring(self, config: Any, index: SessionIndex, streaming: bool) -> NeighbourScoring:
        return VSKNNScoring(
            index,
            config["k"],
            config["sample_size"],
            streaming,
            float(config["idf_weighting"]),
            weighting=str(config["weighting"]),
            weighting_score=str(config["weighting_score"]),
        )
