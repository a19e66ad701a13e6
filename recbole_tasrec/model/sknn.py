r"""SKNN: session-based k-nearest neighbours with cosine similarity.

Reference:
    Malte Ludewig, Dietmar Jannach. "Evaluation of Session-based Recommendation Algorithms." User Modeling and
    User-Adapted Interaction 28(4-5), 2018 (section 3.2, "SKNN"); Jannach and Ludewig, RecSys 2017; session-rec's
    ``ContextKNN``.

Equations, with ``s`` the current session and ``n`` a past session, both as sets of items:

* ``sim(s, n) = |s ∩ n| / sqrt(|s| |n|)`` (cosine of the binary item vectors);
* ``N_s``: among the past sessions sharing an item with ``s``, the ``sample_size`` most recent (by their last
  click, as session-rec), then of those the ``k`` most similar;
* ``score(i, s) = sum_{n in N_s} sim(s, n) 1_n(i)``.

Departures: session-rec's ``ContextKNN`` defaults to Jaccard similarity, while the paper and session-rec's
published configurations use cosine, kept here. session-rec's cosine computes ``|s ∩ n| sqrt(|s|) / sqrt(|n|)``
(an operator-precedence slip); for one current session that is the cosine times the constant ``|s|``, so the
neighbours and the ranking are the same. Items of the current session keep the score their neighbours give them
and get no boost: session-rec's ``remind=False`` (its default). session-rec's ``remind=True`` instead lifts the
last three clicked items to the top (score ``(score + 5) * 5 + c / 100``), which this package does not do. Which
past sessions exist is this package's protocol (``knn_streaming``, see :mod:`~recbole_tasrec.model.session_knn`);
the current session is the prefix RecBole feeds every model (the last ``MAX_ITEM_LIST_LENGTH`` clicks).
"""

from __future__ import annotations

from typing import Any

from recbole_tasrec.model.session_knn import NeighbourScoring, SessionIndex, SessionKNN


class SKNN(SessionKNN):
    """SKNN (Ludewig and Jannach 2018); see the module docstring. Keys: ``k``, ``sample_size``, ``knn_streaming``."""

    def build_scoring(self, config: Any, index: SessionIndex, streaming: bool) -> NeighbourScoring:
        return NeighbourScoring(index, config["k"], config["sample_size"], streaming)
