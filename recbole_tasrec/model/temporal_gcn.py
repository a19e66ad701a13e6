r"""The temporal GCN of TASRec (paper 2.2, Eq. 2-4): a GCN over the decayed item graph ``E_t``.

The maths sits on :class:`TemporalGCN`; below it, the engine that picks between computing every layer
on the rows a batch needs (``local``) or on the whole table (``full``). torch only.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recbole_tasrec.model.init import uniform_init_
from recbole_tasrec.model.sparse import SpMM, csr, csr_row_block, csr_transpose

__all__ = ["TemporalGCN", "l2_normalize", "sample_neighbors"]


class TemporalGCN(nn.Module):
    r"""GCN over the decayed temporal item graph ``E_t`` (TASRec Eq. 2, 3).

    .. math::
        x^k_i = \mathrm{LeakyReLU}\Big(\frac{\sum_j e_{ij} x^{k-1}_j + x^{k-1}_i}{\sum_j e_{ij} + 1}
                 W_1\Big) = \mathrm{LeakyReLU}\big((P x^{k-1})_i W_1\big), \quad k = 1..K,
        \qquad x_i = \frac{1}{K+1}\sum_{k=0}^{K} x^k_i

    with ``x^0 = X`` (the item embedding table), one ``W_1`` (``d x d``, no bias) shared by all
    layers as Eq. 2 has no layer index, and ``P = D^{-1}(E + I)`` the row-normalised
    propagation matrix with self loops, built elsewhere (an isolated item must have
    ``P_ii = 1``, so it gets ``LeakyReLU(x_i W_1)``; an empty row gives ``LeakyReLU(0) = 0``).
    ``P`` is a constant: gradients flow to ``X`` and ``W_1`` only.

    Two equivalent paths (same numbers, same gradients) and a chooser:

    * ``'local'``: only the rows that are needed. Layer ``K`` on the batch's distinct items
      ``S_K``, layer ``k`` on ``S_k = S_{k+1} \cup N(S_{k+1})``, ``x^0`` read on ``S_0``; the
      sub-blocks of ``P`` are cut out of its CSR arrays with vectorised ops
      (:func:`csr_row_block`, sets marked in an item array). Far cheaper when the batch touches a small
      part of the table (training).
    * ``'full'``: every layer on the whole table (evaluation over a day can compute it once
      and cache it; :meth:`full_table`). ``P^T`` for the backward is cached per ``P``.
    * ``'auto'`` (default): ``'local'`` when its estimated cost
      ``sum_k (nnz(P[S_k]) + |S_k| d)`` is at most ``local_cost_ratio`` times the full cost
      ``K (nnz(P) + n d)``, else ``'full'``.

    Args:
        hidden_size: ``d``.
        n_layers: ``K >= 0`` (``K = 0``: ``x = X``).
        negative_slope: LeakyReLU slope. The paper does not give it; ``0.2`` is the GAT /
            PyG convention for graph layers (torch's default would be ``0.01``).
        mode: ``'auto'``, ``'local'`` or ``'full'``.
        local_cost_ratio: the ``'auto'`` threshold above.
        sparse_grad: on the ``'local'`` path, give the embedding table its gradient as a sparse tensor
            (the rows of ``S_0`` only). Cheaper when the table gets a dense gradient elsewhere that absorbs
            it in place (TASRec's output layer); alone, the table's ``.grad`` would then be sparse.
        max_neighbors: ``None`` (the paper: every neighbour), or in training mode on the ``'local'`` path, rows
            of ``P`` with more entries keep this many, drawn uniformly without replacement, each scaled by
            ``entries / max_neighbors``: an unbiased estimate of ``(P x)_i`` (neighbour sampling, as GraphSAGE),
            which bounds the frontiers at shop scale (``|S_{k-1}| <= |S_k| (m + 1)``). Evaluation is exact.
    """

    def __init__(
        self,
        hidden_size: int,
        n_layers: int,
        negative_slope: float = 0.2,
        mode: Literal["auto", "local", "full"] = "auto",
        local_cost_ratio: float = 0.5,
        sparse_grad: bool = False,
        max_neighbors: int | None = None,
    ) -> None:
        super().__init__()
        if n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {n_layers}")
        if mode not in ("auto", "local", "full"):
            raise ValueError(f"mode must be 'auto', 'local' or 'full', got {mode!r}")
        self.hidden_size = hidden_size
        self.n_layers = n_layers
        self.negative_slope = negative_slope
        self.mode = mode
        self.local_cost_ratio = local_cost_ratio
        self.sparse_grad = sparse_grad
        if max_neighbors is not None and max_neighbors < 1:
            raise ValueError(f"max_neighbors must be None (every neighbour) or >= 1, got {max_neighbors}")
        self.max_neighbors = max_neighbors
        # W1 applied as x @ weight (Eq. 2 writes x W1).
        self.weight = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self._cache: tuple[Tensor, Tensor, Tensor | None] | None = None  # (P, P as dtype, its T)
        self.last_mode: str | None = None  # which path the last forward took (for logs/tests)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """SR-GNN-style ``U(-1/sqrt(d), 1/sqrt(d))``, like every other weight of the model."""
        uniform_init_([self.weight], self.hidden_size)

    def __getstate__(self) -> dict:
        # The cached P (and P^T) belong to one day's graph: never pickle or deep-copy them.
        state = self.__dict__.copy()
        state["_cache"] = None
        return state

    def extra_repr(self) -> str:
        return (
            f"hidden_size={self.hidden_size}, n_layers={self.n_layers}, "
            f"negative_slope={self.negative_slope}, mode={self.mode!r}"
        )

    # -- helpers ---------------------------------------------------------------------------
    def _layer(self, aggregated: Tensor) -> Tensor:
        return F.leaky_relu(aggregated @ self.weight, self.negative_slope)

    def _prepare(self, embedding_weight: Tensor, propagation: Tensor, transpose: bool) -> tuple[Tensor, Tensor | None]:
        """Check ``P``; return it in the embeddings' dtype (and ``P^T`` if asked), cached per ``P``.

        The cache is keyed on the caller's ``P`` object, so a day's graph is converted and
        transposed once, however many batches use it.
        """
        if propagation.layout != torch.sparse_csr:
            raise ValueError(f"propagation must be a sparse CSR tensor, got layout {propagation.layout}")
        n = embedding_weight.size(0)
        if tuple(propagation.shape) != (n, n):
            raise ValueError(f"propagation must be {n} x {n}, got {tuple(propagation.shape)}")
        cache = self._cache
        if cache is None or cache[0] is not propagation or cache[1].dtype != embedding_weight.dtype:
            converted = propagation.to(embedding_weight.dtype)  # no copy when the dtype matches
            cache = (propagation, converted, None)
        if transpose and cache[2] is None:
            cache = (cache[0], cache[1], csr_transpose(cache[1]))
        self._cache = cache
        return cache[1], (cache[2] if transpose else None)

    # -- the two paths ---------------------------------------------------------------------
    def full_table(self, embedding_weight: Tensor, propagation: Tensor) -> Tensor:
        """``x`` for every item, ``(n_items, d)``: every layer over the whole table."""
        needs_grad = torch.is_grad_enabled() and (embedding_weight.requires_grad or self.weight.requires_grad)
        matrix, matrix_t = self._prepare(embedding_weight, propagation, transpose=needs_grad)
        h = total = embedding_weight
        for _ in range(self.n_layers):
            h = self._layer(SpMM.apply(matrix, matrix_t, h))
            total = total + h
        return total / (self.n_layers + 1) if self.n_layers else total

    def _local_plan(self, propagation: Tensor, rows: Tensor, budget: float | None):
        """Frontiers ``S_K ⊆ ... ⊆ S_0`` (ascending ids), the CSR blocks ``P[S_k, S_{k-1}]`` and where ``S_K``'s
        items sit in each frontier; ``None`` over budget. Sets are marked in an ``n_items`` array, not sorted."""
        n_items, device = propagation.size(0), rows.device
        frontiers: list[Tensor] = [rows]  # S_K, S_{K-1}, ..., S_0
        blocks: list[tuple[Tensor, Tensor, Tensor]] = []
        target_rows: list[Tensor] = [torch.arange(rows.numel(), device=device)]  # S_K's rows in each frontier
        where = torch.empty(n_items, dtype=torch.long, device=device)  # item -> its row in the newest frontier
        cost = 0.0
        for _ in range(self.n_layers):
            current = frontiers[-1]
            crow, col, values = csr_row_block(propagation, current)
            if self.max_neighbors is not None and self.training:
                crow, col, values = sample_neighbors(crow, col, values, self.max_neighbors)
            cost += col.numel() + current.numel() * self.hidden_size
            if budget is not None and cost > budget:
                return None
            member = torch.zeros(n_items, dtype=torch.bool, device=device)
            member[current] = True
            member[col] = True
            previous = member.nonzero().squeeze(1)  # S_{k-1} = S_k and its neighbours
            where[previous] = torch.arange(previous.numel(), device=device)
            blocks.append((crow, where[col].to(crow.dtype), values))
            target_rows.append(where[rows])
            frontiers.append(previous)
        return frontiers, blocks, target_rows

    def _local(
        self,
        embedding_weight: Tensor,
        frontiers: list[Tensor],
        blocks: list[tuple[Tensor, Tensor, Tensor]],
        target_rows: list[Tensor],
    ) -> Tensor:
        """``x`` on ``S_K = frontiers[0]`` from the plan, ``(|S_K|, d)``."""
        h = F.embedding(frontiers[-1], embedding_weight, sparse=self.sparse_grad)  # x^0 on S_0
        # index_select, not fancy indexing: its backward is an index_add_, not an accumulating index_put_
        total = h.index_select(0, target_rows[-1])
        # Layer k = 1..K maps S_{k-1} = frontiers[K-k+1] -> S_k = frontiers[K-k].
        for depth in range(self.n_layers - 1, -1, -1):
            crow, local_col, values = blocks[depth]
            block = csr(crow, local_col, values, (frontiers[depth].numel(), frontiers[depth + 1].numel()))
            h = self._layer(SpMM.apply(block, None, h))
            total = total + (h if depth == 0 else h.index_select(0, target_rows[depth]))
        return total / (self.n_layers + 1)

    def forward(
        self,
        embedding_weight: Tensor,
        propagation: Tensor,
        items: Tensor,
        mode: Literal["auto", "local", "full"] | None = None,
    ) -> Tensor:
        """``x`` (Eq. 3) for ``items`` (any shape, long): returns ``items.shape + (d,)``.

        ``embedding_weight``: ``(n_items, d)``; ``propagation``: ``P``, ``n_items x n_items``
        sparse CSR; ``mode`` overrides the constructor's.
        """
        mode = mode or self.mode
        matrix, _ = self._prepare(embedding_weight, propagation, transpose=False)
        if self.n_layers == 0:
            self.last_mode = "local"
            return embedding_weight[items]
        n_items = embedding_weight.size(0)
        plan = None
        if mode != "full":
            unique_items, inverse = torch.unique(items, return_inverse=True)
            budget = None
            if mode == "auto":
                full_cost = self.n_layers * (matrix.values().numel() + n_items * self.hidden_size)
                budget = self.local_cost_ratio * full_cost
            plan = self._local_plan(matrix, unique_items, budget)
        if plan is None:
            self.last_mode = "full"
            return self.full_table(embedding_weight, propagation)[items]
        self.last_mode = "local"
        x = self._local(embedding_weight, *plan)
        return x.index_select(0, inverse.reshape(-1)).view(*items.shape, x.size(-1))


def sample_neighbors(crow: Tensor, col: Tensor, values: Tensor, most: int) -> tuple[Tensor, Tensor, Tensor]:
    """A CSR block whose rows of more than ``most`` entries keep ``most`` of them, drawn uniformly without
    replacement (torch's global generator) and scaled by ``entries / most``: each entry is kept with probability
    ``most / entries``, so the sampled row times ``x`` is an unbiased estimate of the whole row's."""
    counts = crow[1:] - crow[:-1]
    if counts.numel() == 0 or int(counts.max()) <= most:
        return crow, col, values
    row = torch.repeat_interleave(torch.arange(counts.numel(), device=crow.device), counts)
    # a random order inside each row, the rows still ascending (row + a uniform draw in [0, 1))
    shuffled = torch.argsort(row.double() + torch.rand(row.numel(), dtype=torch.float64, device=crow.device))
    rank = torch.arange(row.numel(), device=crow.device) - crow[:-1][row]
    keep = shuffled[rank < most].sort().values
    kept = counts.clamp(max=most)
    kept_crow = torch.zeros_like(crow)
    torch.cumsum(kept, 0, out=kept_crow[1:])
    scale = (counts.to(values.dtype) / kept.to(values.dtype))[row[keep]]
    return kept_crow, col[keep], values[keep] * scale


def l2_normalize(x: Tensor, dim: int = -1, eps: float = 1e-12) -> Tensor:
    r"""Eq. 4, ``x_i <- x_i / max(||x_i||_2, eps)``.

    ``eps`` (``F.normalize``'s default, ``1e-12``) keeps an all-zero row (the padding item's
    embedding) at zero instead of producing ``NaN``; any other row is unaffected.
    """
    return F.normalize(x, p=2.0, dim=dim, eps=eps)
