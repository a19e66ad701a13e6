"""The seam between TASRec and its temporal graphs: what the model asks of a graph source.

A training data set gives the model a :class:`~recbole_tasrec.data.DailyGraphs` (``E_t`` of every day,
from the data set's clicks; ``TASRecDataset.graph_source``); a serving process gives it a
:class:`~recbole_tasrec.serve.recommender.LatestGraph` (one graph that new days are folded into, used for
every request). The model never builds or swaps graphs itself.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from recbole_tasrec.data.temporal_graph import TemporalGraph

__all__ = ["GraphSource"]


@runtime_checkable
class GraphSource(Protocol):
    """Eq. 1-2 for the model: the propagation matrix of a day, and the graph a checkpoint keeps."""

    def propagation(self, day: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Eq. 2's ``P`` (``n_items x n_items`` sparse CSR, float32) of the graph that scores the samples of
        ``day``; built from days before ``day`` only. Treat it as read-only (sources may cache it)."""
        ...

    def latest_graph(self) -> TemporalGraph:
        """A copy of the graph after every day the source knows: what scoring the next day needs, saved in a
        checkpoint so that serving needs no training data."""
        ...
