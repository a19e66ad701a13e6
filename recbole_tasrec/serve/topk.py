"""Exact top-k of ``q X^T`` over a large item table that reads a quarter of its bytes: an int8 first pass, bounded.

A one-session request at a million items is memory-bound: a scan of the fp32 table (1M x 100 = 400 MB) took
42-92 ms here (``benchmarks/bench_scale.py``, one thread). :class:`BoundedTopK` keeps an int8 copy of the
table (100 MB) and makes the answer exact anyway, by a bound on each item's error:

* **Table** (once): each row ``x_i`` gets its own scale ``a_i = max_j |x_ij| / 127`` and int8 codes
  ``c_i = round(x_i / a_i)``, so ``x~_i = a_i c_i``; stored with ``n_i = ||x_i||_2`` and ``r_i = ||x_i - x~_i||_2``.
* **Query** (per request): ``b = max_j |q_j| / 127``, ``p = round(q / b)``, ``q~ = b p``.
* **First pass**: ``t_i = a_i b (p . c_i)``, the integer dot products computed exactly in int32 by
  ``torch._int_mm`` (``|p . c_i| <= d 127^2``); the table is viewed as ``(n / f, f d)`` rows against a
  block-diagonal query, a skinny matrix product that runs faster than the matrix-vector one.
* **Bound** (Cauchy-Schwarz): ``q.x_i - q~.x~_i = (q - q~).x_i + q~.(x_i - x~_i)``, so
  ``|s_i - t_i| <= e_i = ||q - q~|| n_i + ||q~|| r_i + eta (n_i + r_i)``, where ``eta = 4 (d + 8) u (||q|| + ||q~||)``
  (``u = 2^-24``) covers the fp32 rounding of ``s_i``'s own dot product, of ``t_i`` and of the bound's arithmetic
  (each at most about ``d u`` relative), with a margin of two.
* **Selection**: the ``2k`` best ``t_i`` give lower bounds ``t_i - e_i``; ``tau`` = the ``k``-th largest of them is
  at most the ``k``-th largest exact score. Every item with ``t_i + e_i >= tau`` is a candidate; any other item's
  exact score is below ``tau``, hence below ``k`` candidates' scores: it cannot be in the top-``k``. The
  candidates (about 50 of 1M items in the benchmark) are scored exactly in fp32 and the top-``k`` of them is
  the answer: the exact top-``k``. They are found in one pass over ``t``: blocks' maxima give a cut ``c`` with
  ``2k`` items at or above it, so ``tau >= c - max e`` and no candidate lies below ``c - 2 max e``.

Ties: items whose exact scores are equal (or within the fp32 rounding of one dot product, ~1e-5 relative at
``d = 100``, where two BLAS calls may order them differently too) can be exchanged at the ``k``-th place; the
scores returned are always the exact ones. Excluded items (the padding item, a session's seen items) get ``-inf``
and are never returned while finite scores remain, as with ``torch.topk`` over masked scores. If the bound lets
through more than :data:`MAX_CANDIDATE_SHARE` of the items (all scores equal, a zero query), the group of queries
gets every exact score instead: the answer stays exact, only slower.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["BoundedTopK", "MAX_CANDIDATE_SHARE", "topk_rows"]

#: above this share of candidates a group of queries gets every exact score (the bound has not helped)
MAX_CANDIDATE_SHARE = 0.05
#: the table is viewed as ``(n / FOLD, FOLD * d)`` against a block-diagonal query (fastest measured on 2 cores)
FOLD = 16
#: queries scored together (their ``(n, G)`` int32 first-pass scores stay ~64 MB at 1M items)
GROUP = 16
#: fp32's unit roundoff
_U = 2.0**-24
#: items per block of :func:`topk_rows` (small blocks: more maxima to rank; large: more items to search)
BLOCK = 64


def topk_rows(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``torch.topk(scores, k, dim=1)`` of a ``(B, n)`` score matrix in less than half the time at
    ``n = 40,000``: the maxima of blocks of :data:`BLOCK` items are compared first, and only the ``k`` blocks
    with the largest maxima (and the short last block) are searched. Every item of the top-``k`` lies in one
    of them: a block ranked above the item's own holds an item at least as large as the item, and fewer than
    ``k`` items are larger. The same values; among equal scores the items may differ, as between two calls
    of ``torch.topk`` on other hardware."""
    rows, n = scores.shape
    blocks = n // BLOCK
    if blocks <= k:
        return torch.topk(scores, k, dim=1)
    head = scores[:, : blocks * BLOCK].view(rows, blocks, BLOCK)
    chosen = head.amax(2).topk(k, dim=1).indices
    items = (chosen.unsqueeze(2) * BLOCK + torch.arange(BLOCK, device=scores.device)).view(rows, -1)
    if blocks * BLOCK < n:
        items = torch.cat([items, torch.arange(blocks * BLOCK, n, device=scores.device).expand(rows, -1)], 1)
    values, where = scores.gather(1, items).topk(k, dim=1)
    return values, items.gather(1, where)


class BoundedTopK:
    """An int8 copy of ``table`` (``(n, d)`` fp32, fixed for the index's life) that answers exact top-``k`` of
    ``queries @ table.T``; see the module docstring for the bound."""

    def __init__(self, table: Tensor) -> None:
        if table.dim() != 2 or table.size(0) == 0:
            raise ValueError(f"the item table must be a non-empty (n_items, d) matrix, got shape {tuple(table.shape)}")
        table = table.detach().float().contiguous()
        if not bool(torch.isfinite(table).all()):
            raise ValueError("the item table holds inf or NaN: no bound can be given for it")
        self.table = table
        self.n, self.d = table.shape
        self.scale = table.abs().amax(1) / 127  # a_i
        codes = torch.round(table / self.scale.clamp_min(torch.finfo(torch.float32).tiny).unsqueeze(1))
        rows = -(-self.n // FOLD) * FOLD
        padded = torch.zeros(rows, self.d, dtype=torch.int8)
        padded[: self.n] = codes.to(torch.int8)
        self.codes = padded.view(rows // FOLD, FOLD * self.d)  # (n / f, f d): the first pass's operand
        self.norm = table.norm(dim=1)  # n_i
        self.error = (table - codes * self.scale.unsqueeze(1)).norm(dim=1)  # r_i
        self.widest = (self.norm.max(), self.error.max(), (self.norm + self.error).max())  # for a first cut

    def nbytes(self) -> int:
        """Bytes the index adds to the table: codes, scales and the two norms."""
        return self.codes.numel() + 3 * 4 * self.n

    def topk(self, queries: Tensor, k: int, exclude: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """``(values, items)``, each ``(B, min(k, n))``, best first: the exact top-``k`` of ``queries @ table.T``
        with the ``exclude`` pairs ``(query rows, items)`` at ``-inf``."""
        queries = queries.detach().float()
        k = min(int(k), self.n)
        values, items = [], []
        for start in range(0, queries.size(0), GROUP):
            group = queries[start : start + GROUP]
            masked = None
            if exclude is not None:
                inside = (exclude[0] >= start) & (exclude[0] < start + group.size(0))
                masked = (exclude[0][inside] - start, exclude[1][inside])
            v, i = self._group_topk(group, k, masked)
            values.append(v)
            items.append(i)
        return torch.cat(values), torch.cat(items)

    def candidates(
        self, queries: Tensor, k: int, exclude: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor] | None:
        """The ``(query rows, items)`` the bound keeps for ``queries`` (at most :data:`GROUP`), or ``None`` when it
        keeps too many (the exact scan runs instead)."""
        approx, bound_parts = self._first_pass(queries.detach().float(), exclude)
        return self._candidates(approx, bound_parts, min(int(k), self.n))

    # --- the steps ---------------------------------------------------------------------------------------------
    def _first_pass(self, queries: Tensor, exclude: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple]:
        """``t_i / b`` of every item as ``(G, n)`` fp32 (excluded pairs at ``-inf``), and the per-query terms of
        ``e_i / b``: each query's first pass is kept in units of its own ``b`` (one multiplication fewer)."""
        g = queries.size(0)
        b = (queries.abs().amax(1) / 127).clamp_min(torch.finfo(torch.float32).tiny)
        codes = torch.round(queries / b.unsqueeze(1))
        quantised = codes * b.unsqueeze(1)
        # the block-diagonal query's zeros cost work: fewer copies for more queries (a power of two, as FOLD)
        fold = 1 << max(0, (FOLD // g).bit_length() - 1)
        block = torch.block_diag(*[codes.to(torch.int8).t()] * fold)  # (f d, f G)
        exact_ints = torch._int_mm(self.codes.view(-1, fold * self.d), block).view(-1, g)[: self.n]  # p . c_i
        approx = torch.empty(g, self.n).copy_(exact_ints.t()).mul_(self.scale)  # (G, n): one pass fewer than mul
        if exclude is not None:
            approx[exclude[0], exclude[1]] = float("-inf")
        q_norm, q_tilde_norm = queries.norm(dim=1), quantised.norm(dim=1)
        eta = 4 * (self.d + 8) * _U * (q_norm + q_tilde_norm)
        return approx, ((queries - quantised).norm(dim=1) / b, q_tilde_norm / b, eta / b)

    def _bound(self, query: Tensor, items: Tensor, parts: tuple) -> Tensor:
        """``e_i / b`` of the ``(query, item)`` pairs given."""
        gap, q_tilde_norm, eta = (part[query] for part in parts)
        norm, error = self.norm[items], self.error[items]
        return gap * norm + q_tilde_norm * error + eta * (norm + error)

    def _candidates(self, approx: Tensor, parts: tuple, k: int) -> tuple[Tensor, Tensor] | None:
        """The pairs whose upper bound reaches their query's ``tau``, in one pass over ``approx``: ``c``, the
        ``2k``-th largest of the maxima of blocks of items, has ``2k`` items at or above it, whose lower bounds
        are at least ``c - widest``; so ``tau >= c - widest`` and every candidate has ``t_i >= c - 2 widest``."""
        g, wanted = approx.size(0), min(2 * k, self.n)
        width = max(1, min(1024, self.n // (8 * wanted)))
        blocks = self.n // width
        maxima = approx[:, : blocks * width].view(g, blocks, width).amax(2)
        cut = torch.full((g,), float("-inf"))  # too few blocks (a small table): every finite item is kept
        if blocks >= wanted:
            cut = torch.topk(maxima, wanted, dim=1).values[:, -1]
        widest = parts[0] * self.widest[0] + parts[1] * self.widest[1] + parts[2] * self.widest[2]
        floor = (cut - 2 * widest).clamp_min(torch.finfo(torch.float32).min)  # -inf items are never kept
        # only the blocks whose maximum reaches the floor are compared item by item (and the last, short one)
        block_query, block = (maxima >= floor.unsqueeze(1)).nonzero(as_tuple=True)
        inside = approx[:, : blocks * width].view(g, blocks, width)[block_query, block] >= floor[block_query, None]
        pair, offset = inside.nonzero(as_tuple=True)
        query, items = block_query[pair], block[pair] * width + offset
        tail_query, tail = (approx[:, blocks * width :] >= floor.unsqueeze(1)).nonzero(as_tuple=True)
        query, items = torch.cat([query, tail_query]), torch.cat([items, tail + blocks * width])
        query, order = torch.sort(query, stable=True)
        items = items[order]
        if items.numel() > MAX_CANDIDATE_SHARE * self.n * g:
            return None
        near = approx[query, items]
        best, where = torch.topk(_padded(query, near, g, wanted), wanted, dim=1)
        lower = best - self._bound(
            torch.arange(g).unsqueeze(1), _padded(query, items, g, wanted, 0).gather(1, where), parts
        )
        tau = torch.topk(lower, k, dim=1).values[:, -1]  # the k-th best lower bound of each query
        keep = near + self._bound(query, items, parts) >= tau[query]
        return query[keep], items[keep]

    def _group_topk(self, queries: Tensor, k: int, exclude: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor]:
        approx, parts = self._first_pass(queries, exclude)
        found = self._candidates(approx, parts, k)
        if found is None:
            return self._scan(queries, k, exclude)
        query, items = found
        exact = (self.table[items] * queries[query]).sum(1)
        g = queries.size(0)
        values, where = torch.topk(_padded(query, exact, g, k), k, dim=1)
        return values, _padded(query, items, g, k, 0).gather(1, where)

    def _scan(self, queries: Tensor, k: int, exclude: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor]:
        """Every exact score of the group (``G x n`` fp32): the fallback when the bound keeps too much."""
        scores = queries @ self.table.t()
        if exclude is not None:
            scores[exclude[0], exclude[1]] = float("-inf")
        return torch.topk(scores, k, dim=1)


def _padded(query: Tensor, values: Tensor, g: int, least: int, fill: float = float("-inf")) -> Tensor:
    """``values`` of pairs sorted by ``query`` as one row per query, ``(g, max(least, most pairs of a query))``,
    ``fill`` elsewhere."""
    counts = torch.bincount(query, minlength=g)
    slot = torch.arange(query.numel()) - (torch.cumsum(counts, 0) - counts)[query]
    out = torch.full((g, max(least, int(counts.max()) if query.numel() else 0)), fill, dtype=values.dtype)
    out[query, slot] = values
    return out
