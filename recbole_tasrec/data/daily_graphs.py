"""``E_t`` for any day ``t`` from per-day transition lists, with one running graph (bounded memory).

:class:`DailyGraphs` replays :class:`~recbole_tasrec.data.temporal_graph.TemporalGraph` day by day: forward
in time it advances, backward it replays from a horizon beyond which every contribution has faded below the
pruning threshold. It is the graph source (``recbole_tasrec.model.graph_source.GraphSource``) a training
data set gives TASRec. No RecBole.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from recbole_tasrec.data.temporal_graph import (
    TemporalGraph,
    check_pairs,
    check_threshold,
    max_daily_weight,
    replay_horizon,
)

__all__ = ["DailyGraphs"]


class DailyGraphs:
    """``E_t`` for any day ``t`` (built from days ``< t`` only), from the per-day transition lists.

    Keeps ONE running ``TemporalGraph``, so memory does not grow with the number of days. ``graph(t)``
    with ``t >=`` the running day advances it (chronological access, the streaming evaluation, costs one
    ``advance`` per day and equals a chronological ``TemporalGraph`` exactly); an earlier ``t`` replays from
    day ``max(0, t - horizon)`` (``replay_horizon``). A replayed graph is within ``prune_below / (1 -
    decay)`` of the chronological one, entry by entry (and identical when ``prune_below == 0``: the horizon
    is then infinite and the replay starts at day 0). With binary edges, ``decay <= 1/2`` and ``threshold
    <= 1`` the neighbour sets are identical either way.
    """

    def __init__(
        self,
        day_transitions: Sequence[tuple[np.ndarray, np.ndarray]],
        n_items: int,
        decay: float = 0.5,
        edge_weight: str = "binary",
        prune_below: float = 2**-16,
        threshold: float = 1.0,
        padding_idx: int | None = 0,
    ) -> None:
        self._running = TemporalGraph(n_items, decay, edge_weight, prune_below, padding_idx)
        self._threshold = check_threshold(threshold)
        self._days: list[tuple[np.ndarray, np.ndarray]] = []
        self._max_weight = 0
        self._cache: OrderedDict[tuple[int, str], torch.Tensor] = OrderedDict()
        for t, pair in enumerate(day_transitions):
            try:
                src, dst = pair
            except (TypeError, ValueError):
                raise ValueError(f"day_transitions[{t}] must be a (src, dst) pair") from None
            try:
                self.append_day(src, dst)
            except ValueError as err:
                raise ValueError(f"day_transitions[{t}]: {err}") from None

    @property
    def n_days(self) -> int:
        return len(self._days)

    @property
    def n_items(self) -> int:
        return self._running.n_items

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def max_daily_weight(self) -> int:
        """The largest daily weight over all days (1 in binary mode when any edge exists)."""
        return self._max_weight

    @property
    def horizon(self) -> int | None:
        """Days a backward replay starts before ``t`` (``None``: from day 0); see ``replay_horizon``."""
        r = self._running
        return replay_horizon(r.decay, r.prune_below, self._max_weight)

    @property
    def nnz(self) -> int:
        """Stored nonzeros of the running graph (the state this object keeps besides the transitions)."""
        return self._running.nnz

    def __len__(self) -> int:
        return len(self._days)

    def append_day(self, src: np.ndarray, dst: np.ndarray) -> None:
        """Append a new day's transitions (day ``n_days``), e.g. in a serving process after the day closes."""
        r = self._running
        src, dst = check_pairs(src, dst, r.n_items, r.padding_idx)
        self._days.append((src.copy(), dst.copy()))
        self._max_weight = max(self._max_weight, max_daily_weight(src, dst, r.edge_weight))

    def _check_day(self, t: Any) -> int:
        if isinstance(t, bool) or not isinstance(t, int | np.integer):
            raise ValueError(f"day must be an integer, got {t!r}")
        if not 0 <= int(t) <= self.n_days:
            raise ValueError(
                f"day {t} is outside [0, n_days={self.n_days}] (day n_days is the graph after all known days)"
            )
        return int(t)

    def _graph_at(self, t: int) -> TemporalGraph:
        if t < self._running.day:
            h = self.horizon
            start = 0 if h is None else max(0, t - h)
            r = self._running
            fresh = TemporalGraph(r.n_items, r.decay, r.edge_weight, r.prune_below, r.padding_idx)
            fresh._day = start
            self._running = fresh
            self._cache.clear()  # cached results belong to the old line of days; keep P and E_t consistent
        while self._running.day < t:
            self._running.advance(*self._days[self._running.day])
        return self._running

    def graph(self, t: int) -> TemporalGraph:
        """A copy of ``E_t``: days ``0..t-1`` folded in, ``graph(t).day == t``; ``t`` in ``[0, n_days]``."""
        return self._graph_at(self._check_day(t)).copy()

    def latest_graph(self) -> TemporalGraph:
        """A copy of ``E_{n_days}``, the graph after every known day (what a checkpoint keeps)."""
        return self.graph(self.n_days)

    def propagation(self, t: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Eq. 2's ``P`` for day ``t`` at this object's threshold.

        The last two results are cached and returned as the same tensor object: treat them as read-only.
        """
        t = self._check_day(t)
        key = (t, str(torch.device(device)) if device is not None else "cpu")
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        result = self._graph_at(t).propagation(self._threshold, device)
        self._cache[key] = result
        while len(self._cache) > 2:
            self._cache.popitem(last=False)
        return result
