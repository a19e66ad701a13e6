r"""SKNN: session-based k-nearest neighbours with cosine similarity.

Reference:
    Malte Ludewig, Dietmar Jannach. "Evaluation of Session-based Recommendation Algorithms." User Modeling and
    User-Adapted Interaction 28(4-5), 2018 (section 3.2, "SKNN"); Jannach and Ludewig, RecSys 2017.

Equations, with ``s`` the current session and ``n`` a past session, both as sets of items:

* ``sim(s, n) = |s ∩ n| / sqrt(|s| |n|)`` (cosine of the binary item vectors);
* ``N_s``: among the past sessions sharing an item with ``s``, the ``sample_size`` most recent, then of those
  the ``k`` most similar;
* ``score(i, s) = sum_{n in N_s} sim(s, n) 1_n(i)``.

Departures: which past sessions exist is this package's protocol (``knn_streaming``, see
:mod:`~recbole_tasrec.model.session_knn`); "most recent" is the session's start (its first click), since the
data set keeps each session's clicks in start order, where session-rec uses the session's last click. Items of
the current session stay recommendable (session-rec's ``remind=True``), as RecBole evaluates every model.
"""

from __future__ import annotations

from typing import Any

from recbole_tasrec.model.session_knn import NeighbourScoring, SessionIndex, SessionKNN


class SKNN(SessionKNN):
    """SKNN (Ludewig and Jannach 2018); see the module docstring. Keys: ``k``, ``sample_size``, ``knn_streaming``."""

    def build_scoring(self, config: Any, index: SessionIndex, streaming: bool) -> NeighbourScoring:
        return NeighbourScoring(index, config["k"], config["sample_size"], streaming)
