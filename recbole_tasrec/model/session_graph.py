r"""SR-GNN's session graphs and gated graph neural network: TASRec's intra-session layer (paper 2.1).

``build_session_graphs`` turns a padded batch of sessions into per-session directed graphs with tensor
operations (no loop over sessions); ``SessionGGNN`` propagates over them. Item id ``0`` is padding and
sequences are right-padded with ``0``. Depends on torch only.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recbole_tasrec.model.init import uniform_init_

__all__ = ["SessionGGNN", "SessionGraphs", "build_session_graphs", "gather_positions"]


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
    invalid = positions.unsqueeze(0) >= item_seq_len.to(device).unsqueeze(1)  # (B, L): padding positions

    # Sort-based unique per row: padding gets a sentinel that sorts last.
    sentinel = torch.iinfo(torch.long).max
    sorted_key, perm = torch.sort(item_seq.masked_fill(invalid, sentinel), dim=1, stable=True)
    sorted_invalid = sorted_key == sentinel  # item ids are below the sentinel
    is_first = F.pad(sorted_key.diff(dim=1) != 0, (1, 0), value=True) & ~sorted_invalid
    rank = is_first.cumsum(1) - 1  # local node index of each sorted position
    n_nodes = is_first.sum(1)
    n_max = max(int(n_nodes.max()) if batch > 0 else 0, 1)

    alias = torch.zeros_like(item_seq).scatter_(1, perm, rank.masked_fill(sorted_invalid, 0))

    # nodes[b, rank] = item; padded sorted positions go to a dump column that is cut off.
    nodes = item_seq.new_zeros(batch, n_max + 1)
    nodes.scatter_(1, rank.masked_fill(sorted_invalid, n_max), sorted_key.masked_fill(sorted_invalid, 0))
    nodes = nodes[:, :n_max]
    node_mask = torch.arange(n_max, device=device).unsqueeze(0) < n_nodes.unsqueeze(1)

    # Edges p -> p+1 while p+1 is a real position; invalid edges add 0 at a harmless index.
    src, dst = alias[:, :-1], alias[:, 1:]
    edge_valid = (~invalid[:, 1:]).to(dtype)
    offset = torch.arange(0, batch * n_max * n_max, n_max * n_max, device=device).unsqueeze(1)
    flat = (offset + src * n_max + dst).reshape(-1)
    adj = torch.zeros(batch * n_max * n_max, dtype=dtype, device=device)
    adj.index_add_(0, flat, edge_valid.reshape(-1))
    adj = adj.view(batch, n_max, n_max)
    if edge_weight == "binary":
        adj = (adj > 0).to(dtype)

    # weights are whole counts, so a zero row's divisor 1 is clamp_min(1)
    a_out = adj / adj.sum(2, keepdim=True).clamp_min(1)  # divided by the out-weight of the source u
    a_in = adj.transpose(1, 2) / adj.sum(1).unsqueeze(2).clamp_min(1)  # by the in-weight of the target v
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
        uniform_init_(self.parameters(), self.hidden_size)

    def cell(self, a_in: Tensor, a_out: Tensor, hidden: Tensor) -> Tensor:
        """One gated propagation step (SR-GNN Eq. 1-5) on every node, ``(B, N, d)``."""
        input_in = torch.matmul(a_in, self.linear_edge_in(hidden)) + self.b_iah
        input_out = torch.matmul(a_out, self.linear_edge_out(hidden)) + self.b_ioh
        return self._gru(input_in, input_out, hidden)

    def packed_cell(self, a_in: Tensor, a_out: Tensor, hidden: Tensor, real: Tensor) -> Tensor:
        """:meth:`cell` on the real nodes only: ``hidden`` is ``(M, d)``, the nodes ``real`` (flat indices
        into ``B x N``). Only the two adjacency products see the padded ``(B, N, d)`` layout."""
        batch, n_nodes = a_in.shape[:2]

        def neighbours(adjacency: Tensor, messages: Tensor) -> Tensor:
            spread = messages.new_zeros(batch * n_nodes, messages.size(1)).index_copy(0, real, messages)
            return torch.bmm(adjacency, spread.view(batch, n_nodes, -1)).flatten(0, 1).index_select(0, real)

        input_in = neighbours(a_in, self.linear_edge_in(hidden)) + self.b_iah
        input_out = neighbours(a_out, self.linear_edge_out(hidden)) + self.b_ioh
        return self._gru(input_in, input_out, hidden)

    def _gru(self, input_in: Tensor, input_out: Tensor, hidden: Tensor) -> Tensor:
        gi = F.linear(torch.cat([input_in, input_out], dim=-1), self.w_ih, self.b_ih)
        gh = F.linear(hidden, self.w_hh, self.b_hh)
        i_r, i_i, i_n = gi.chunk(3, dim=-1)
        h_r, h_i, h_n = gh.chunk(3, dim=-1)
        reset_gate = torch.sigmoid(i_r + h_r)
        input_gate = torch.sigmoid(i_i + h_i)
        new_gate = torch.tanh(i_n + reset_gate * h_n)
        return (1 - input_gate) * hidden + input_gate * new_gate

    def forward(self, a_in: Tensor, a_out: Tensor, hidden: Tensor, node_mask: Tensor | None = None) -> Tensor:
        """``a_in``, ``a_out``: ``(B, N, N)``; ``hidden``: ``(B, N, d)`` -> ``(B, N, d)``.

        With ``node_mask`` (``(B, N)`` bool, :attr:`SessionGraphs.node_mask`) the gates run on the real nodes
        only and padding nodes come out as zeros. Real nodes get the same values: a padding node has no
        edge, so nothing flows from it. A batch's ``N`` is its largest session's node count while most
        sessions have a few nodes, so this skips most of the GGNN's work (speed only).
        """
        if node_mask is None:
            for _ in range(self.step):
                hidden = self.cell(a_in, a_out, hidden)
            return hidden
        real = node_mask.reshape(-1).nonzero().squeeze(1)
        packed = hidden.flatten(0, 1).index_select(0, real)
        for _ in range(self.step):
            packed = self.packed_cell(a_in, a_out, packed, real)
        return hidden.new_zeros(hidden.shape).flatten(0, 1).index_copy(0, real, packed).view(hidden.shape)
