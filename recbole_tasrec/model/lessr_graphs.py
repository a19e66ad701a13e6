r"""LESSR's two graphs of a session, built for a whole padded batch with tensor operations (no loop over sessions).

Chen and Wong, KDD 2020: the **edge-order preserving (EOP) multigraph** keeps one edge per pair of
consecutive clicks ``i_p -> i_{p+1}`` (repeats stay separate edges) and remembers the order in which they occur;
the **shortcut graph** links every item to every item clicked at the same time or later in the session
(``i_p -> i_q`` for ``p <= q``, so every node has a self loop). Nodes are a session's distinct items, numbered as
:func:`~recbole_tasrec.model.session_graph.build_session_graphs` numbers them (ascending item id; padding is no
node). Positions at or after a session's length are ignored whatever they hold. torch only.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from recbole_tasrec.model.session_graph import build_session_graphs

__all__ = ["LESSRGraphs", "build_lessr_graphs"]


class LESSRGraphs(NamedTuple):
    """A batch of LESSR graphs, one pair per row of ``item_seq``.

    Attributes:
        nodes: ``(B, N)`` item id of each local node (``0`` for padding nodes).
        node_mask: ``(B, N)`` bool, ``True`` for real nodes.
        last: ``(B,)`` local node of the session's last item.
        in_messages: ``(B, N, D)`` EOP multigraph: ``in_messages[b, v, r]`` is the source node of the ``r``-th
            edge into ``v`` in order of occurrence (``0`` where ``r >= in_degree``; ``D = max(in_degree)``).
        in_degree: ``(B, N)`` long, the number of EOP edges into each node (repeats counted).
        shortcut: ``(B, N, N)`` bool, ``shortcut[b, u, v]`` when ``u`` is clicked before or with ``v``.
    """

    nodes: Tensor
    node_mask: Tensor
    last: Tensor
    in_messages: Tensor
    in_degree: Tensor
    shortcut: Tensor


def build_lessr_graphs(item_seq: Tensor, item_seq_len: Tensor) -> LESSRGraphs:
    """The EOP multigraph and the shortcut graph of every session in ``item_seq`` (``(B, L)``, right-padded)."""
    if item_seq.dim() != 2:
        raise ValueError(f"item_seq must be (B, L), got shape {tuple(item_seq.shape)}")
    item_seq_len = item_seq_len.to(item_seq.device).long()
    if bool((item_seq_len < 1).any()) or bool((item_seq_len > item_seq.size(1)).any()):
        raise ValueError(f"session lengths must lie in 1..{item_seq.size(1)}, got {item_seq_len.tolist()}")
    base = build_session_graphs(item_seq, item_seq_len)
    alias = base.alias
    n_nodes = base.nodes.size(1)
    positions = torch.arange(item_seq.size(1), device=item_seq.device)
    valid = positions.unsqueeze(0) < item_seq_len.unsqueeze(1)  # (B, L)
    in_messages, in_degree = _eop_in_messages(alias, valid, n_nodes)
    last = alias.gather(1, (item_seq_len - 1).unsqueeze(1)).squeeze(1)
    return LESSRGraphs(base.nodes, base.node_mask, last, in_messages, in_degree, _shortcut(alias, valid, n_nodes))


def _eop_in_messages(alias: Tensor, valid: Tensor, n_nodes: int) -> tuple[Tensor, Tensor]:
    """Each node's in-edges of the EOP multigraph as an ordered, padded list of source nodes."""
    batch = alias.size(0)
    src, dst = alias[:, :-1], alias[:, 1:]
    edge = valid[:, 1:]  # edge p -> p+1 exists while p+1 is a real position
    hits = torch.nn.functional.one_hot(dst, n_nodes) * edge.unsqueeze(-1)  # (B, L-1, N)
    # rank of each edge among the earlier edges into the same node: its place in that node's ordered list
    rank = (hits.cumsum(1) - 1).gather(2, dst.unsqueeze(-1)).squeeze(-1).clamp(min=0)
    in_degree = hits.sum(1)  # (B, N)
    depth = int(in_degree.max()) if in_degree.numel() else 0
    in_messages = alias.new_zeros(batch, n_nodes * depth + 1)  # the last column swallows non-edges
    flat = torch.where(edge, dst * depth + rank, torch.full_like(dst, n_nodes * depth))
    in_messages.scatter_(1, flat, src)
    return in_messages[:, :-1].view(batch, n_nodes, depth), in_degree


def _shortcut(alias: Tensor, valid: Tensor, n_nodes: int) -> Tensor:
    """``u -> v`` for every pair of positions ``p <= q`` of a session (self loops included)."""
    batch, length = alias.shape
    upper = torch.ones(length, length, dtype=torch.bool, device=alias.device).triu()
    pairs = upper & valid.unsqueeze(2) & valid.unsqueeze(1)  # (B, L, L): positions p <= q, both real
    index = (alias.unsqueeze(2) * n_nodes + alias.unsqueeze(1)).reshape(batch, -1)
    adj = torch.zeros(batch, n_nodes * n_nodes, dtype=torch.long, device=alias.device)
    adj.scatter_add_(1, index, pairs.reshape(batch, -1).long())
    return adj.view(batch, n_nodes, n_nodes) > 0
