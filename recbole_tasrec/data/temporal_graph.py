"""The temporal item graph of TASRec (SIGIR 2021, section 2.2): Eq. 1 and Eq. 2's propagation matrix.

For each day ``t'`` the daily graph ``e^{t'}`` links items clicked one after the other in some session of
that day (symmetric, no self loops). The graph used for the sessions of day ``t`` only sees earlier days::

    E_t = sum_{t' < t} e^{t'} * decay^(t - 1 - t')            (Eq. 1, decay = 1/2 in the paper)
    E_{t+1} = E_t * decay + e^t                                (the same thing, one day at a time)

Eq. 2 averages an item's embedding with its neighbours ``e_ij >= threshold`` weighted by ``e_ij``, which is
the row-normalised matrix ``P = (E_masked + I) / (rowsum(E_masked) + 1)`` applied to the embedding table.

This module knows numpy, scipy and torch only (no RecBole): a serving process, a test or another framework
reuses it. Item ids are row indices ``0..n_items-1``; id ``padding_idx`` (RecBole's padding item 0 by
default) is rejected in transitions, so its row of ``P`` is the identity row.

Pruning (``prune_below``). Entries that fall below ``prune_below`` after a day is folded in are dropped, so
the stored graph only holds pairs seen in the last ``~log(prune_below) / log(decay)`` days, whatever the
length of the history. What this costs, per entry, with ``E`` the exact (unpruned) graph and ``E~`` the
pruned one (``p = prune_below`` in ``[0, 1]``, ``d = decay``, daily weights are integers >= 1):

* ``E~ <= E`` (pruning only removes mass) and ``E - E~ < p / (1 - d^(G+1)) <= p / (1 - d)``, where ``G`` is
  the smallest ``k`` with ``d^k < p``. Why: a drop removes a value ``< p`` which then decays by ``d`` a
  day; a fresh daily weight is ``>= 1 >= p`` so it is never dropped the day it arrives, hence two drops of
  the same entry are at least ``G + 1`` days apart (recreated, then decayed below ``p``), and the removed
  mass sums to less than ``p * (1 + d^(G+1) + d^(2(G+1)) + ...)``. With the defaults that is < 1.6e-5.
* Neighbour sets at a threshold ``tau``: ``{E~ >= tau}`` is a subset of ``{E >= tau}``, and a pair can only
  be missing if its exact weight lies in ``[tau, tau + p / (1 - d))``.
* A pair linked yesterday keeps ``E~_ij >= e^{t-1}_ij >= 1``. So in ``binary`` mode with ``d <= 1/2`` and
  ``tau <= 1`` pruning never changes a neighbour set: both are exactly yesterday's edges (everything older
  sums to ``< d / (1 - d) <= 1``). In ``count`` mode or with ``d > 1/2``, it changes one only if an exact
  weight lies within ``p / (1 - d)`` above ``tau``.
* With ``d == 1`` (no forgetting) nothing is ever dropped; with ``p == 0`` nothing is dropped (exact).
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:  # torch loads only when a propagation matrix is built: the converters stay light
    import torch

from recbole_tasrec.data.clicks import as_int_array

__all__ = ["TemporalGraph", "check_pairs", "check_threshold", "day_matrix", "max_daily_weight", "replay_horizon"]

EDGE_WEIGHTS = ("binary", "count")
_STATE_VERSION = 1


# --- validation helpers ---
def check_pairs(src: Any, dst: Any, n_items: int, padding_idx: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Validate one day's transitions and return them as int64 arrays."""
    src = as_int_array("src", src)
    dst = as_int_array("dst", dst)
    if src.shape != dst.shape:
        raise ValueError(f"src and dst must have the same length, got {src.size} and {dst.size}")
    for name, arr in (("src", src), ("dst", dst)):
        if arr.size and (arr.min() < 0 or arr.max() >= n_items):
            bad = arr[(arr < 0) | (arr >= n_items)][0]
            raise ValueError(f"{name} holds item id {bad}, outside [0, n_items={n_items})")
        if padding_idx is not None and arr.size and np.any(arr == padding_idx):
            raise ValueError(
                f"{name} holds the padding item id {padding_idx}: padding must never enter the temporal "
                "graph (strip padded positions before building transitions, or pass padding_idx=None)"
            )
    return src, dst


def _check_params(n_items: Any, decay: Any, edge_weight: Any, prune_below: Any) -> None:
    if isinstance(n_items, bool) or not isinstance(n_items, int | np.integer) or n_items < 1:
        raise ValueError(f"n_items must be a positive integer, got {n_items!r}")
    if not isinstance(decay, int | float | np.floating | np.integer) or not (0.0 < float(decay) <= 1.0):
        raise ValueError(f"decay must be in (0, 1], got {decay!r}")
    if edge_weight not in EDGE_WEIGHTS:
        raise ValueError(f"edge_weight must be one of {EDGE_WEIGHTS}, got {edge_weight!r}")
    if not isinstance(prune_below, int | float | np.floating | np.integer) or not (0.0 <= float(prune_below) <= 1.0):
        raise ValueError(
            f"prune_below must be in [0, 1] (a larger value would drop fresh daily edges), got {prune_below!r}"
        )


def check_threshold(threshold: Any) -> float:
    if not isinstance(threshold, int | float | np.floating | np.integer) or not (
        math.isfinite(float(threshold)) and float(threshold) >= 0.0
    ):
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold!r}")
    return float(threshold)


# --- functions ---
def day_matrix(
    src: np.ndarray, dst: np.ndarray, n_items: int, edge_weight: str = "binary", padding_idx: int | None = 0
) -> sp.csr_matrix:
    """One day's symmetric graph ``e^{t'}`` of Eq. 1 as a canonical float64 CSR matrix.

    ``binary``: ``e_ij = e_ji = 1`` if ``i -> j`` or ``j -> i`` occurred; ``count``: ``e_ij = c(i->j) +
    c(j->i)``. Self pairs are ignored.
    """
    _check_params(n_items, 0.5, edge_weight, 0.0)
    src, dst = check_pairs(src, dst, n_items, padding_idx)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    rows = np.concatenate([src, dst])
    cols = np.concatenate([dst, src])
    mat = sp.coo_matrix(
        (np.ones(rows.size, dtype=np.float64), (rows, cols)), shape=(n_items, n_items)
    ).tocsr()  # tocsr sums duplicates: counts per ordered cell = c(i->j) + c(j->i)
    mat.sum_duplicates()
    if edge_weight == "binary":
        mat.data[:] = 1.0
    return mat


def max_daily_weight(src: np.ndarray, dst: np.ndarray, edge_weight: str) -> int:
    """The largest entry of ``day_matrix(src, dst)`` (0 for a day without edges), without building it."""
    src = as_int_array("src", src)
    dst = as_int_array("dst", dst)
    keep = src != dst
    if not np.any(keep):
        return 0
    if edge_weight == "binary":
        return 1
    lo = np.minimum(src[keep], dst[keep])
    hi = np.maximum(src[keep], dst[keep])
    _, counts = np.unique(np.stack([lo, hi]), axis=1, return_counts=True)
    return int(counts.max())


def replay_horizon(decay: float, prune_below: float, max_weight: float) -> int | None:
    """Days of history a replay needs so that it stays within the pruning bound ``p / (1 - d)`` of Eq. 1.

    Returns the smallest ``H >= 0`` with ``W * d^H <= p * (d - d^(G+1)) / (1 - d^(G+1))`` (``W`` the largest
    daily weight, ``G`` the smallest ``k`` with ``d^k < p``), or ``None`` (replay from day 0) when nothing
    ever fades out (``p == 0`` or ``d == 1``). Why this bound: a graph replayed from day ``t - H`` misses
    the older days, worth ``< W d^H / (1 - d)`` at day ``t``, and its own pruning error is ``< p / (1 -
    d^(G+1))`` (see the module docstring); the condition makes the sum ``<= p / (1 - d)``. Both the replayed
    and the chronological graph lie in ``[E - p / (1 - d), E]`` for the exact ``E``, so they differ by less
    than ``p / (1 - d)``.
    """
    d, p, w = float(decay), float(prune_below), float(max_weight)
    if p <= 0.0 or d >= 1.0:
        return None
    if w <= 0.0:
        return 0
    g = max(1, math.floor(math.log(p) / math.log(d)))  # smallest g >= 1 with d^g < p, rounding-safe:
    while g > 1 and d ** (g - 1) < p:
        g -= 1
    while d**g >= p:
        g += 1
    slack = p * (d - d ** (g + 1)) / (1.0 - d ** (g + 1))
    h = max(0, math.ceil(math.log(slack / w) / math.log(d)))
    while h > 0 and w * d ** (h - 1) <= slack:  # guard float rounding of the log: smallest h
        h -= 1
    while w * d**h > slack:
        h += 1
    return h


# --- TemporalGraph ---
class TemporalGraph:
    """The decayed item graph ``E_t`` of Eq. 1, folded in one day at a time (``E <- E * decay + e^day``).

    ``day`` counts the days folded in: after ``advance`` was called for days ``0..t-1``, ``weights()`` is
    ``E_t``, the graph for the sessions of day ``t``. Entries below ``prune_below`` are dropped after each
    day (bounded memory; the error this causes is stated in the module docstring). Item ``padding_idx``
    (RecBole's padding item 0) never gets an edge: transitions touching it raise ``ValueError``.
    """

    def __init__(
        self,
        n_items: int,
        decay: float = 0.5,
        edge_weight: str = "binary",
        prune_below: float = 2**-16,
        padding_idx: int | None = 0,
    ) -> None:
        _check_params(n_items, decay, edge_weight, prune_below)
        if padding_idx is not None and not (0 <= int(padding_idx) < int(n_items)):
            raise ValueError(f"padding_idx must be None or in [0, n_items={n_items}), got {padding_idx!r}")
        self._n_items = int(n_items)
        self._decay = float(decay)
        self._edge_weight = str(edge_weight)
        self._prune_below = float(prune_below)
        self._padding_idx = None if padding_idx is None else int(padding_idx)
        self._day = 0
        self._weights = sp.csr_matrix((self._n_items, self._n_items), dtype=np.float64)

    # --- properties ---
    @property
    def n_items(self) -> int:
        return self._n_items

    @property
    def day(self) -> int:
        """Number of days folded in so far (the graph is ``E_day``, for sessions of day ``day``)."""
        return self._day

    @property
    def decay(self) -> float:
        return self._decay

    @property
    def edge_weight(self) -> str:
        return self._edge_weight

    @property
    def prune_below(self) -> float:
        return self._prune_below

    @property
    def padding_idx(self) -> int | None:
        return self._padding_idx

    @property
    def nnz(self) -> int:
        """Stored nonzeros (both directions of each pair): the memory the graph holds."""
        return int(self._weights.nnz)

    @property
    def error_bound(self) -> float:
        """Per-entry bound on what pruning removed: ``0 <= E_exact - E < prune_below / (1 - decay)``."""
        if self._prune_below == 0.0 or self._decay == 1.0:
            return 0.0
        return self._prune_below / (1.0 - self._decay)

    def __repr__(self) -> str:
        return (
            f"TemporalGraph(n_items={self._n_items}, day={self._day}, nnz={self.nnz}, decay={self._decay}, "
            f"edge_weight={self._edge_weight!r}, prune_below={self._prune_below})"
        )

    # --- update ---
    def advance(self, src: np.ndarray, dst: np.ndarray) -> None:
        """Fold one day's transitions ``src[k] -> dst[k]`` into the graph (Eq. 1): ``E <- E * decay + e^day``.

        An empty day is valid and only decays the graph. Self pairs are ignored.
        """
        daily = day_matrix(src, dst, self._n_items, self._edge_weight, self._padding_idx)
        weights = self._weights
        if self._decay != 1.0:
            # in place: the graph owns its arrays (weights(), copy() and state_dict() hand out copies), and
            # ``weights * decay`` would copy the indices too, a whole extra pass over a 10^8-entry graph
            weights.data *= self._decay
        weights = weights + daily if daily.nnz else weights
        weights = sp.csr_matrix(weights, dtype=np.float64)
        if self._prune_below > 0.0:
            weights.data[weights.data < self._prune_below] = 0.0
        weights.eliminate_zeros()  # also drops entries that underflowed to 0 when prune_below == 0
        weights.sum_duplicates()  # canonical: sorted indices, no duplicates
        self._weights = weights
        self._day += 1

    # --- reading ---
    def weights(self) -> sp.csr_matrix:
        """A copy of ``E_day``: symmetric, float64, canonical (sorted indices, no explicit zeros)."""
        return self._weights.copy()

    def neighbors(self, threshold: float = 1.0) -> sp.csr_matrix:
        """``E_masked`` of Eq. 2: the weights ``e_ij >= threshold`` (the neighbour filter), others removed."""
        threshold = check_threshold(threshold)
        masked = self._weights.copy()
        if threshold > 0.0:
            masked.data[masked.data < threshold] = 0.0
            masked.eliminate_zeros()
        return masked

    def propagation(self, threshold: float = 1.0, device: torch.device | str | None = None) -> torch.Tensor:
        """Eq. 2's propagation matrix ``P = (E_masked + I) / (rowsum(E_masked) + 1)``, a float32 sparse CSR.

        ``P @ X`` is Eq. 2's weighted mean of an item and its neighbours, before ``W1`` and the activation.
        Rows sum to 1; an item without neighbours (the padding item always) has the identity row.
        """
        return _propagation_from(self.neighbors(threshold), device)

    # --- persistence ---
    def state_dict(self) -> dict[str, Any]:
        """Plain numpy arrays and scalars, so a checkpoint can carry the graph."""
        w = self._weights
        return {
            "version": _STATE_VERSION,
            "n_items": self._n_items,
            "decay": self._decay,
            "edge_weight": self._edge_weight,
            "prune_below": self._prune_below,
            "padding_idx": self._padding_idx,
            "day": self._day,
            "indptr": w.indptr.astype(np.int64),
            "indices": w.indices.astype(np.int64),
            "data": w.data.astype(np.float64),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> TemporalGraph:
        """Rebuild a graph saved by ``state_dict`` (validated: a corrupt state raises ``ValueError``)."""
        required = {"n_items", "decay", "edge_weight", "prune_below", "day", "indptr", "indices", "data"}
        missing = required - set(state)
        if missing:
            raise ValueError(f"TemporalGraph state is missing keys {sorted(missing)}")
        if state.get("version", _STATE_VERSION) != _STATE_VERSION:
            raise ValueError(f"unsupported TemporalGraph state version {state.get('version')!r}")
        graph = cls(
            int(state["n_items"]),
            decay=float(state["decay"]),
            edge_weight=str(state["edge_weight"]),
            prune_below=float(state["prune_below"]),
            padding_idx=state.get("padding_idx", 0),
        )
        day = int(state["day"])
        if day < 0:
            raise ValueError(f"TemporalGraph state has a negative day {day}")
        n = graph.n_items
        indptr = np.asarray(state["indptr"], dtype=np.int64)
        indices = np.asarray(state["indices"], dtype=np.int64)
        data = np.asarray(state["data"], dtype=np.float64)
        if (
            indptr.shape != (n + 1,)
            or indptr[0] != 0
            or np.any(np.diff(indptr) < 0)
            or indptr[-1] != indices.size
            or indices.shape != data.shape
        ):
            raise ValueError("TemporalGraph state has inconsistent CSR arrays (indptr/indices/data)")
        if indices.size and (indices.min() < 0 or indices.max() >= n):
            raise ValueError(f"TemporalGraph state has column indices outside [0, {n})")
        if np.any(~np.isfinite(data)) or np.any(data < 0):
            raise ValueError("TemporalGraph state has negative or non-finite weights")
        weights = sp.csr_matrix((data.copy(), indices.copy(), indptr.copy()), shape=(n, n))
        weights.sum_duplicates()
        weights.eliminate_zeros()
        if (weights != weights.T).nnz:
            raise ValueError("TemporalGraph state is not symmetric")
        graph._weights = weights
        graph._day = day
        return graph

    def copy(self) -> TemporalGraph:
        """An independent copy (advancing one does not change the other)."""
        other = TemporalGraph.__new__(TemporalGraph)
        other.__dict__.update(self.__dict__)
        other._weights = self._weights.copy()
        return other


def _propagation_from(masked: sp.csr_matrix, device: torch.device | str | None) -> torch.Tensor:
    import torch

    n = masked.shape[0]
    with_self = (masked + sp.identity(n, dtype=np.float64, format="csr")).tocsr()
    with_self.sum_duplicates()
    rowsum = np.asarray(masked.sum(axis=1)).ravel() + 1.0
    values = with_self.data / np.repeat(rowsum, np.diff(with_self.indptr))
    with warnings.catch_warnings():
        # torch warns once per process that sparse CSR is "in beta"; the ops used here (matmul, to_dense,
        # index_select) are stable, so keep the warning from leaking into users' logs.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(with_self.indptr.astype(np.int64)),
            torch.from_numpy(with_self.indices.astype(np.int64)),
            torch.from_numpy(values.astype(np.float32)),
            size=(n, n),
            dtype=torch.float32,
            device=device,
            check_invariants=False,  # canonical by construction (scipy CSR, sorted, no duplicates)
        )
