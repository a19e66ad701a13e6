"""Clicks grouped by day and session, and the item transitions Eq. 1 is built from. numpy only.

:class:`DayClicks` is what a day-indexed data set keeps of its data (O(clicks)); :func:`transition_pairs`
turns clicks into the directed ``src -> dst`` pairs of a day. Neither knows RecBole or torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DayClicks", "as_int_array", "transition_pairs"]


def as_int_array(name: str, values: Any) -> np.ndarray:
    """``values`` as a 1-D int64 array, or a ``ValueError`` naming ``name``."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def transition_pairs(session_index: np.ndarray, items: np.ndarray, window: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Directed transitions ``src -> dst`` of Eq. 1: ``dst`` clicked 1..``window`` positions after ``src``.

    ``session_index`` and ``items`` describe clicks grouped by session, each session's clicks contiguous
    and in time order (sorted by session id, or by session start: the ids need not increase, but a session
    split into two runs is an error). Pairs never cross sessions; self pairs (``src == dst``) are dropped.
    The output is ordered by the position of ``src``, then by the offset. Vectorised: one pass per offset.
    """
    sessions = as_int_array("session_index", session_index)
    items = as_int_array("items", items)
    if sessions.shape != items.shape:
        raise ValueError(f"session_index and items must have the same length, got {sessions.size} and {items.size}")
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1:
        raise ValueError(f"window must be an integer >= 1, got {window!r}")
    if sessions.size > 1:
        n_runs = 1 + int(np.count_nonzero(sessions[1:] != sessions[:-1]))
        if n_runs != np.unique(sessions).size:
            raise ValueError(
                "session_index must keep each session's clicks contiguous (clicks grouped by session, then "
                "sorted by time); some session appears in two separate runs"
            )
    n = items.size
    positions, offsets, srcs, dsts = [], [], [], []
    for k in range(1, min(int(window), max(n - 1, 0)) + 1):
        keep = (sessions[k:] == sessions[:-k]) & (items[k:] != items[:-k])
        pos = np.flatnonzero(keep)
        positions.append(pos)
        offsets.append(np.full(pos.size, k, dtype=np.int64))
        srcs.append(items[:-k][pos])
        dsts.append(items[k:][pos])
    if not srcs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = np.lexsort((np.concatenate(offsets), np.concatenate(positions)))
    return np.concatenate(srcs)[order], np.concatenate(dsts)[order]


@dataclass(frozen=True)
class DayClicks:
    """Every kept click, ordered by (day, session start, session, time); ``offsets[t]:offsets[t + 1]`` are
    day ``t``'s clicks. Sessions of a day are contiguous, so consecutive clicks of one session are
    neighbours in these arrays."""

    session: np.ndarray  # remapped session id of each click
    item: np.ndarray  # remapped item id of each click
    offsets: np.ndarray  # (n_days + 1,) start of each day in the arrays above

    @property
    def n_days(self) -> int:
        return len(self.offsets) - 1

    def day(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(session, item) of day ``t``'s clicks."""
        lo, hi = self.offsets[t], self.offsets[t + 1]
        return self.session[lo:hi], self.item[lo:hi]

    def transitions(self, window: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each day's (src, dst) click pairs within ``window`` positions (Eq. 1's raw material)."""
        return [transition_pairs(*self.day(t), window=window) for t in range(self.n_days)]
