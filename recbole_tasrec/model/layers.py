r"""The named layers of TASRec (Zhou et al., SIGIR 2021), each usable and testable on its own.

Every layer is vectorised over the batch: there is no Python loop over sessions, items or rows
(only over propagation steps / GCN layers). Item id ``0`` is padding (RecBole's convention) and
sequences are right-padded with ``0``.

========================  ==============================================================
``build_session_graphs``  the per-session directed graphs of SR-GNN (paper 2.1)
``SessionGGNN``           SR-GNN's gated graph neural network on those graphs (2.1)
``TemporalGCN``           the GCN over the decayed temporal item graph (Eq. 2, 3)
``l2_normalize``          row-wise L2 normalisation (Eq. 4)
``AttentionReadout``      soft-attention session readout (Eq. 6, 7)
========================  ==============================================================

This module depends on torch only (no RecBole, no torch_sparse / PyG / DGL), so a serving
process or another framework can reuse it.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "AttentionReadout",
    "SessionGGNN",
    "SessionGraphs",
    "TemporalGCN",
    "build_session_graphs",
    "csr_row_block",
    "gather_positions",
    "l2_normalize",
]


# --------------------------------------------------------------------------------------------
# Session graphs (paper 2.1)
# --------------------------------------------------------------------------------------------
class SessionGraphs(NamedTuple):
    """A batch of session graphs, one per row of ``item_seq``.

    Attributes:
        alias: ``(B, L)`` long, position -> local node index (``0`` at padded positions, which
            must be masked downstream).
        nodes: ``(B, N)`` long, local node -> item id (``0`` for padding nodes).
        node_mask: ``(B, N)`` bool, ``True`` for real nodes.
        a_in: ``(B, N, N)``, ``a_in[b, v, u] = w(u->v) / sum_u' w(u'->v)`` (incoming, divided by
            the target's in-weight).
        a_out: ``(B, N, N)``, ``a_out[b, u, v] = w(u->v) / sum_v' w(u->v')`` (outgoing, divided by
            the source's out-weight).
    """

    alias: Tensor
    nodes: Tensor
    node_mask: Tensor
    a_in: Tensor
    a_out: Tensor


def build_session_graphs(
    item_seq: Tensor,
    item_seq_len: Tensor,
    edge_weight: Literal["count", "binary"] = "count",
    dtype: torch.dtype | None = None,
) -> SessionGraphs:
    r"""Build SR-GNN's session graphs for a whole batch without a Python loop.

    Per session the nodes are its distinct items in **ascending item-id order** (this is what
    ``np.unique`` gives in SR-GNN's ``get_slice`` and RecBole's ``SRGNN._get_slice``; node order
    does not change any result, the GGNN is permutation-equivariant and positions are read back
    through ``alias``). Padding is not a node here (RecBole makes item ``0`` a node of every
    padded session; that node has no edges and is only read at masked positions). Every pair of
    consecutive clicks ``i_p -> i_{p+1}`` (``p + 1 < len``) is a directed edge; a repeated click
    ``i -> i`` is a self loop, as in SR-GNN.

    .. math::
        A^{out}_{uv} = \frac{w_{uv}}{\sum_{v'} w_{uv'}}, \qquad
        A^{in}_{vu} = \frac{w_{uv}}{\sum_{u'} w_{u'v}}

    with an all-zero row left at zero (SR-GNN divides by ``1`` there). ``a_in`` and ``a_out``
    are the two halves of SR-GNN's ``A = [A_in | A_out]`` (``A[:, :, :N]`` and ``A[:, :, N:]``).

    Args:
        item_seq: ``(B, L)`` long item ids, right-padded with ``0``.
        item_seq_len: ``(B,)`` long real lengths; positions ``>= len`` are padding whatever they hold.
        edge_weight: ``'count'``: ``w_uv`` = number of times ``u -> v`` occurs in the session
            (what the TASRec and SR-GNN papers describe); ``'binary'``: ``w_uv = 1`` for every
            distinct edge (what SR-GNN's code and RecBole's SRGNN do: ``u_A[u][v] = 1``).
        dtype: float dtype of the adjacency matrices (default: torch's default dtype).

    Returns:
        :class:`SessionGraphs` with ``N = max(1, max distinct items in a session of the batch)``.
    """
    if edge_weight not in ("count", "binary"):
        raise ValueError(f"edge_weight must be 'count' or 'binary', got {edge_weight!r}")
    if item_seq.dim() != 2:
        raise ValueError(f"item_seq must be (B, L), got shape {tuple(item_seq.shape)}")
    dtype = dtype or torch.get_default_dtype()
    device = item_seq.device
    batch, length = item_seq.shape
    item_seq = item_seq.long()

    positions = torch.arange(length, device=device)
    valid = positions.unsqueeze(0) < item_seq_len.to(device).unsqueeze(1)  # (B, L)

    # Sort-based unique per row: padding gets a sentinel that sorts last.
    sentinel = torch.iinfo(torch.long).max
    key = item_seq.masked_fill(~valid, sentinel)
    sorted_key, perm = torch.sort(key, dim=1, stable=True)
    sorted_valid = valid.gather(1, perm)
    is_first = sorted_valid.clone()
    is_first[:, 1:] &= sorted_key[:, 1:] != sorted_key[:, :-1]
    rank = is_first.long().cumsum(1) - 1  # local node index of each sorted position
    n_nodes = is_first.sum(1)
    n_max = max(int(n_nodes.max()) if batch > 0 else 0, 1)

    alias = torch.zeros_like(item_seq).scatter_(1, perm, rank).masked_fill_(~valid, 0)

    # nodes[b, rank] = item; padded sorted positions go to a dump column that is cut off.
    dump_rank = torch.where(sorted_valid, rank, torch.full_like(rank, n_max))
    nodes = item_seq.new_zeros(batch, n_max + 1)
    nodes.scatter_(1, dump_rank, sorted_key.masked_fill(~sorted_valid, 0))
    nodes = nodes[:, :n_max]
    node_mask = torch.arange(n_max, device=device).unsqueeze(0) < n_nodes.unsqueeze(1)

    # Edges p -> p+1 while p+1 is a real position; invalid edges add 0 at a harmless index.
    src, dst = alias[:, :-1], alias[:, 1:]
    edge_valid = valid[:, 1:].to(dtype)
    offset = (torch.arange(batch, device=device) * n_max * n_max).unsqueeze(1)
    flat = (offset + src * n_max + dst).reshape(-1)
    adj = torch.zeros(batch * n_max * n_max, dtype=dtype, device=device)
    adj.index_add_(0, flat, edge_valid.reshape(-1))
    adj = adj.view(batch, n_max, n_max)
    if edge_weight == "binary":
        adj = (adj > 0).to(dtype)

    out_weight = adj.sum(2, keepdim=True)  # (B, N, 1): out-weight of the source u
    in_weight = adj.sum(1).unsqueeze(2)  # (B, N, 1): in-weight of the target v
    a_out = adj / torch.where(out_weight == 0, torch.ones_like(out_weight), out_weight)
    a_in = adj.transpose(1, 2) / torch.where(in_weight == 0, torch.ones_like(in_weight), in_weight)
    return SessionGraphs(alias=alias, nodes=nodes, node_mask=node_mask, a_in=a_in, a_out=a_out)


def gather_positions(node_hidden: Tensor, alias: Tensor) -> Tensor:
    """Read node vectors ``(B, N, d)`` back at sequence positions: ``(B, L, d)`` via ``alias``."""
    return node_hidden.gather(1, alias.unsqueeze(-1).expand(-1, -1, node_hidden.size(-1)))


# --------------------------------------------------------------------------------------------
# Intra-session layer (paper 2.1): SR-GNN's gated GNN
# --------------------------------------------------------------------------------------------
class SessionGGNN(nn.Module):
    r"""SR-GNN's gated graph neural network (TASRec 2.1; SR-GNN Eq. 1-5).

    One propagation step, for every node ``v`` of every session at once:

    .. math::
        a_v &= \big[A^{in}_v (H W_{e,in}^\top + b_{e,in}) + b_{iah} \;\|\;
                    A^{out}_v (H W_{e,out}^\top + b_{e,out}) + b_{ioh}\big] \\
        r_v &= \sigma(W_{ir} a_v + b_{ir} + W_{hr} h_v + b_{hr}) \\
        z_v &= \sigma(W_{iz} a_v + b_{iz} + W_{hz} h_v + b_{hz}) \\
        n_v &= \tanh(W_{in} a_v + b_{in} + r_v \odot (W_{hn} h_v + b_{hn})) \\
        h_v' &= (1 - z_v) \odot h_v + z_v \odot n_v

    repeated ``step`` times (``W_{e,in}``, ``W_{e,out}``: ``linear_edge_in/out``; the gate
    weights ``W_{i*}``, ``W_{h*}`` are the row blocks ``r, z, n`` of ``w_ih``, ``w_hh``; padding
    nodes have no edges and are never read at real positions). Parameter names and maths are those of RecBole's
    ``recbole.model.sequential_recommender.srgnn.GNN``, so its ``state_dict`` loads here as is;
    the only difference is that the two adjacency halves come as separate tensors.
    """

    def __init__(self, hidden_size: int, step: int = 1) -> None:
        super().__init__()
        if step < 1:
            raise ValueError(f"step must be >= 1, got {step}")
        self.hidden_size = hidden_size
        self.step = step
        gate_size = 3 * hidden_size
        self.w_ih = nn.Parameter(torch.empty(gate_size, 2 * hidden_size))
        self.w_hh = nn.Parameter(torch.empty(gate_size, hidden_size))
        self.b_ih = nn.Parameter(torch.empty(gate_size))
        self.b_hh = nn.Parameter(torch.empty(gate_size))
        self.b_iah = nn.Parameter(torch.empty(hidden_size))
        self.b_ioh = nn.Parameter(torch.empty(hidden_size))
        self.linear_edge_in = nn.Linear(hidden_size, hidden_size, bias=True)
        self.linear_edge_out = nn.Linear(hidden_size, hidden_size, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """SR-GNN's initialisation: every weight ``~ U(-1/sqrt(d), 1/sqrt(d))``."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    def cell(self, a_in: Tensor, a_out: Tensor, hidden: Tensor) -> Tensor:
        """One gated propagation step (SR-GNN Eq. 1-5)."""
        input_in = torch.matmul(a_in, self.linear_edge_in(hidden)) + self.b_iah
        input_out = torch.matmul(a_out, self.linear_edge_out(hidden)) + self.b_ioh
        gi = F.linear(torch.cat([input_in, input_out], dim=-1), self.w_ih, self.b_ih)
        gh = F.linear(hidden, self.w_hh, self.b_hh)
        i_r, i_i, i_n = gi.chunk(3, dim=-1)
        h_r, h_i, h_n = gh.chunk(3, dim=-1)
        reset_gate = torch.sigmoid(i_r + h_r)
        input_gate = torch.sigmoid(i_i + h_i)
        new_gate = torch.tanh(i_n + reset_gate * h_n)
        return (1 - input_gate) * hidden + input_gate * new_gate

    def forward(self, a_in: Tensor, a_out: Tensor, hidden: Tensor) -> Tensor:
        """``a_in``, ``a_out``: ``(B, N, N)``; ``hidden``: ``(B, N, d)`` -> ``(B, N, d)``."""
        for _ in range(self.step):
            hidden = self.cell(a_in, a_out, hidden)
        return hidden


# --------------------------------------------------------------------------------------------
# Temporal GCN (paper 2.2, Eq. 2, 3)
# --------------------------------------------------------------------------------------------
def _csr(crow: Tensor, col: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    """A CSR tensor built from indices we made ourselves (valid by construction)."""
    with warnings.catch_warnings():
        # torch warns once that sparse CSR is "in beta"; the ops used here are stable.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, size, check_invariants=False)


def _csr_transpose(matrix: Tensor) -> Tensor:
    """``matrix.T`` as CSR (one sort of the non-zeros)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return matrix.t().to_sparse_csr()


class _SpMM(torch.autograd.Function):
    """``A @ H`` for a constant CSR ``A``; the backward uses a given (cached) ``A^T``.

    torch's own backward of ``csr @ dense`` converts ``A^T`` to CSR (a sort of all non-zeros)
    at every call; on the whole table that conversion costs about as much as the product
    (measured: 25-33 ms vs 17 ms forward + backward at 43k items, d = 100, 2 threads).
    """

    @staticmethod
    def forward(ctx, matrix: Tensor, matrix_t: Tensor | None, dense: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(matrix, matrix_t)
        return matrix @ dense

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[None, None, Tensor]:  # type: ignore[override]
        matrix, matrix_t = ctx.saved_tensors
        if matrix_t is not None:
            return None, None, matrix_t @ grad.contiguous()
        # a small local block: A^T G as a scatter over the non-zeros, cheaper than building A^T in CSR
        crow, col, values = matrix.crow_indices(), matrix.col_indices(), matrix.values()
        row_of_nonzero = torch.repeat_interleave(torch.arange(crow.numel() - 1, device=crow.device), crow.diff())
        contributions = grad.index_select(0, row_of_nonzero) * values.unsqueeze(1)
        return None, None, grad.new_zeros(matrix.size(1), grad.size(1)).index_add_(0, col, contributions)


def csr_row_block(matrix: Tensor, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The rows ``rows`` of a CSR matrix, as ``(crow, col, values)`` of a ``len(rows) x n`` CSR.

    Vectorised (``repeat_interleave`` + exclusive ``cumsum``), no loop over rows; the columns
    keep their global ids and their order inside each row.
    """
    crow, col, values = matrix.crow_indices(), matrix.col_indices(), matrix.values()
    rows = rows.to(crow.dtype)
    starts = crow[rows]
    counts = crow[rows + 1] - starts
    block_crow = torch.zeros(rows.numel() + 1, dtype=crow.dtype, device=crow.device)
    torch.cumsum(counts, 0, out=block_crow[1:])
    total = int(block_crow[-1])
    local_row = torch.repeat_interleave(torch.arange(rows.numel(), device=crow.device), counts, output_size=total)
    within = torch.arange(total, device=crow.device, dtype=crow.dtype) - block_crow[:-1][local_row]
    positions = starts[local_row] + within
    return block_crow, col[positions], values[positions]


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
      (:func:`csr_row_block`, ``searchsorted``). Far cheaper when the batch touches a small
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
    """

    def __init__(
        self,
        hidden_size: int,
        n_layers: int,
        negative_slope: float = 0.2,
        mode: Literal["auto", "local", "full"] = "auto",
        local_cost_ratio: float = 0.5,
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
        # W1 applied as x @ weight (Eq. 2 writes x W1).
        self.weight = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self._cache: tuple[Tensor, Tensor, Tensor | None] | None = None  # (P, P as dtype, its T)
        self.last_mode: str | None = None  # which path the last forward took (for logs/tests)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """SR-GNN-style ``U(-1/sqrt(d), 1/sqrt(d))``, like every other weight of the model."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        nn.init.uniform_(self.weight, -stdv, stdv)

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
            cache = (cache[0], cache[1], _csr_transpose(cache[1]))
        self._cache = cache
        return cache[1], (cache[2] if transpose else None)

    # -- the two paths ---------------------------------------------------------------------
    def full_table(self, embedding_weight: Tensor, propagation: Tensor) -> Tensor:
        """``x`` for every item, ``(n_items, d)``: every layer over the whole table."""
        needs_grad = torch.is_grad_enabled() and (embedding_weight.requires_grad or self.weight.requires_grad)
        matrix, matrix_t = self._prepare(embedding_weight, propagation, transpose=needs_grad)
        h = total = embedding_weight
        for _ in range(self.n_layers):
            h = self._layer(_SpMM.apply(matrix, matrix_t, h))
            total = total + h
        return total / (self.n_layers + 1) if self.n_layers else total

    def _local_plan(self, propagation: Tensor, rows: Tensor, budget: float | None):
        """Frontiers ``S_K ⊆ ... ⊆ S_0`` and the CSR blocks ``P[S_k, S_{k-1}]``; ``None`` over budget."""
        frontiers: list[Tensor] = [rows]  # S_K, S_{K-1}, ..., S_0
        blocks: list[tuple[Tensor, Tensor, Tensor]] = []
        cost = 0.0
        for _ in range(self.n_layers):
            current = frontiers[-1]
            crow, col, values = csr_row_block(propagation, current)
            cost += col.numel() + current.numel() * self.hidden_size
            if budget is not None and cost > budget:
                return None
            previous = torch.unique(torch.cat([current, col.to(current.dtype)]))
            local_col = torch.searchsorted(previous, col.to(previous.dtype)).to(crow.dtype)
            blocks.append((crow, local_col, values))
            frontiers.append(previous)
        return frontiers, blocks

    def _local(
        self, embedding_weight: Tensor, frontiers: list[Tensor], blocks: list[tuple[Tensor, Tensor, Tensor]]
    ) -> Tensor:
        """``x`` on ``S_K = frontiers[0]`` from the plan, ``(|S_K|, d)``."""
        targets = frontiers[0]
        # index_select, not fancy indexing: its backward is an index_add_, not an accumulating index_put_
        h = embedding_weight.index_select(0, frontiers[-1])  # x^0 on S_0
        total = h.index_select(0, torch.searchsorted(frontiers[-1], targets))
        # Layer k = 1..K maps S_{k-1} = frontiers[K-k+1] -> S_k = frontiers[K-k].
        for depth in range(self.n_layers - 1, -1, -1):
            crow, local_col, values = blocks[depth]
            rows, cols = frontiers[depth], frontiers[depth + 1]
            block = _csr(crow, local_col, values, (rows.numel(), cols.numel()))
            h = self._layer(_SpMM.apply(block, None, h))
            total = total + (h if depth == 0 else h.index_select(0, torch.searchsorted(rows, targets)))
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


# --------------------------------------------------------------------------------------------
# Eq. 4 and the readout (Eq. 6, 7)
# --------------------------------------------------------------------------------------------
def l2_normalize(x: Tensor, dim: int = -1, eps: float = 1e-12) -> Tensor:
    r"""Eq. 4, ``x_i <- x_i / max(||x_i||_2, eps)``.

    ``eps`` (``F.normalize``'s default, ``1e-12``) keeps an all-zero row (the padding item's
    embedding) at zero instead of producing ``NaN``; any other row is unaffected.
    """
    return F.normalize(x, p=2.0, dim=dim, eps=eps)


class AttentionReadout(nn.Module):
    r"""Soft-attention session readout (TASRec Eq. 6, 7; SR-GNN Eq. 6-8).

    .. math::
        \beta_i = q^\top \sigma(W_2 z_i + W_3 z_l + b), \qquad
        s = W_4 \big[\textstyle\sum_{i \le l} \beta_i z_i \;\|\; z_l\big]

    ``z_l`` is the vector at the last real position (passed in as ``last``). Names follow
    SR-GNN's code: ``linear_one`` is ``W_3`` (applied to ``z_l``), ``linear_two`` is ``W_2``
    (applied to each ``z_i``), ``linear_three`` is ``q`` (``d -> 1``, no bias) and
    ``linear_transform`` is ``W_4`` (``2d -> d``). Both ``linear_one`` and ``linear_two`` carry a
    bias as in SR-GNN, so Eq. 6's ``b`` is ``linear_one.bias + linear_two.bias`` (an
    over-parametrisation that changes nothing). Eq. 7 has no bias, so ``linear_transform`` has
    none by default (SR-GNN's code and RecBole's SRGNN use one: ``transform_bias=True``).

    Padded positions (``mask == False``) are zeroed before anything touches them, so their
    values change neither the output nor any gradient.
    """

    def __init__(self, hidden_size: int, transform_bias: bool = False) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.linear_one = nn.Linear(hidden_size, hidden_size, bias=True)
        self.linear_two = nn.Linear(hidden_size, hidden_size, bias=True)
        self.linear_three = nn.Linear(hidden_size, 1, bias=False)
        self.linear_transform = nn.Linear(2 * hidden_size, hidden_size, bias=transform_bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """SR-GNN's initialisation: every weight ``~ U(-1/sqrt(d), 1/sqrt(d))``."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    def forward(self, z: Tensor, mask: Tensor, last: Tensor) -> Tensor:
        """``z``: ``(B, L, d)``, ``mask``: ``(B, L)`` bool, ``last``: ``(B, d)`` -> ``s``: ``(B, d)``."""
        mask = mask.unsqueeze(-1)
        z = z.masked_fill(~mask, 0.0)
        beta = self.linear_three(torch.sigmoid(self.linear_one(last).unsqueeze(1) + self.linear_two(z)))
        pooled = (beta * z).masked_fill(~mask, 0.0).sum(1)
        return self.linear_transform(torch.cat([pooled, last], dim=-1))
