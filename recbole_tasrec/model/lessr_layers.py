r"""LESSR's layers (Chen and Wong, KDD 2020) on padded node tensors: EOPA, SGAT and the readout.

Node features are ``(B, N, D)`` with a ``(B, N)`` mask of real nodes (see :mod:`recbole_tasrec.model.lessr_graphs`);
every layer leaves padding nodes at zero and never lets them reach a real node. As in the authors' code, each
layer starts with batch normalisation over the batch's real nodes and dropout on the features it aggregates.
torch only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["EOPA", "SGAT", "LESSRReadout", "MaskedBatchNorm"]


class MaskedBatchNorm(nn.BatchNorm1d):
    """``BatchNorm1d`` over the rows a mask selects (the real nodes of a padded batch), or over all rows.

    A training batch with a single row falls back to the running statistics instead of failing (torch's
    ``BatchNorm1d`` refuses one value per channel); the authors' code would crash on such a batch.
    """

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        rows = x if mask is None else x[mask]
        use_batch = self.training and rows.size(0) > 1
        normed = F.batch_norm(
            rows,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            training=use_batch,
            momentum=self.momentum if use_batch else 0.0,
            eps=self.eps,
        )
        if mask is None:
            return normed
        return x.new_zeros(x.shape).masked_scatter(mask.unsqueeze(-1), normed)


def _prelu(activation: nn.PReLU, x: Tensor, node_mask: Tensor) -> Tensor:
    """Per-feature PReLU on ``(B, N, d)`` (torch's PReLU reads dimension 1 as the channel), padding zeroed."""
    return activation(x.reshape(-1, x.size(-1))).view_as(x) * node_mask.unsqueeze(-1)


class EOPA(nn.Module):
    r"""Edge-order preserving aggregation (the paper's EOPA layer).

    .. math::
        h_v = \mathrm{GRU}\big(x_{u_1}, x_{u_2}, \dots, x_{u_{\deg(v)}}\big), \qquad
        x'_v = \mathrm{PReLU}(W_{self}\, x_v + W_{neigh}\, h_v)

    where ``u_1, u_2, ...`` are the sources of ``v``'s in-edges of the EOP multigraph in order of occurrence
    and ``h_v = 0`` without in-edges. All nodes' ordered lists are padded into one tensor and run through one GRU;
    ``h_v`` is its state after the node's last real message.
    """

    def __init__(self, input_dim: int, output_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.batch_norm = MaskedBatchNorm(input_dim)
        self.feat_drop = nn.Dropout(dropout)
        self.gru = nn.GRU(input_dim, input_dim, batch_first=True)
        self.fc_self = nn.Linear(input_dim, output_dim, bias=False)
        self.fc_neigh = nn.Linear(input_dim, output_dim, bias=False)
        self.activation = nn.PReLU(output_dim)

    def forward(self, feat: Tensor, node_mask: Tensor, in_messages: Tensor, in_degree: Tensor) -> Tensor:
        """``feat``: ``(B, N, D)``; ``in_messages``: ``(B, N, depth)`` source nodes; -> ``(B, N, output_dim)``."""
        feat = self.batch_norm(feat, node_mask)
        messages = self.feat_drop(feat)
        neigh = feat.new_zeros(feat.shape)
        receivers = in_degree > 0
        if bool(receivers.any()):
            batch_index = torch.arange(feat.size(0), device=feat.device).view(-1, 1, 1)
            sequences = messages[batch_index, in_messages][receivers]  # (R, depth, D), each in edge order
            outputs, _ = self.gru(sequences)
            last = (in_degree[receivers] - 1).view(-1, 1, 1).expand(-1, 1, outputs.size(-1))
            neigh = neigh.masked_scatter(receivers.unsqueeze(-1), outputs.gather(1, last).squeeze(1))
        return _prelu(self.activation, self.fc_self(feat) + self.fc_neigh(neigh), node_mask)


class SGAT(nn.Module):
    r"""Shortcut graph attention (the paper's SGAT layer), over the in-edges of the shortcut graph.

    .. math::
        e_{uv} = p^\top \sigma(W_q x_u + W_k x_v + r), \qquad
        \alpha_{uv} = \operatorname{softmax}_{u \in N_{in}(v)} e_{uv}, \qquad
        x'_v = \mathrm{PReLU}\Big(\sum_{u \in N_{in}(v)} \alpha_{uv} W_v x_u\Big)

    (``r`` is ``fc_q``'s bias, as in the authors' code). Every real node has a self loop, so its softmax is never
    empty.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.batch_norm = MaskedBatchNorm(input_dim)
        self.feat_drop = nn.Dropout(dropout)
        self.fc_q = nn.Linear(input_dim, hidden_dim, bias=True)
        self.fc_k = nn.Linear(input_dim, hidden_dim, bias=False)
        self.fc_v = nn.Linear(input_dim, output_dim, bias=False)
        self.fc_e = nn.Linear(hidden_dim, 1, bias=False)
        self.activation = nn.PReLU(output_dim)

    def forward(self, feat: Tensor, node_mask: Tensor, shortcut: Tensor) -> Tensor:
        """``feat``: ``(B, N, D)``; ``shortcut``: ``(B, N, N)`` bool, ``[b, u, v]`` for an edge ``u -> v``."""
        feat = self.feat_drop(self.batch_norm(feat, node_mask))
        q, k, v = self.fc_q(feat), self.fc_k(feat), self.fc_v(feat)
        e = self.fc_e(torch.sigmoid(q.unsqueeze(2) + k.unsqueeze(1))).squeeze(-1)  # (B, N_u, N_v)
        allowed = shortcut | ~node_mask.unsqueeze(1)  # padding targets attend anywhere; zeroed below
        alpha = torch.softmax(e.masked_fill(~allowed, torch.finfo(e.dtype).min), dim=1)
        return _prelu(self.activation, torch.einsum("buv,bud->bvd", alpha, v), node_mask)


class LESSRReadout(nn.Module):
    r"""LESSR's session readout: attention over the session's nodes, guided by the last item.

    .. math::
        \beta_v = \operatorname{softmax}_v\big(p^\top \sigma(W_u x_v + W_l x_{last} + r)\big), \qquad
        s_g = W_{out} \sum_v \beta_v x_v
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.batch_norm = MaskedBatchNorm(input_dim)
        self.feat_drop = nn.Dropout(dropout)
        self.fc_u = nn.Linear(input_dim, hidden_dim, bias=False)
        self.fc_v = nn.Linear(input_dim, hidden_dim, bias=True)
        self.fc_e = nn.Linear(hidden_dim, 1, bias=False)
        self.fc_out = nn.Linear(input_dim, output_dim, bias=False)

    def forward(self, feat: Tensor, node_mask: Tensor, last: Tensor) -> Tensor:
        """``feat``: ``(B, N, D)``, ``last``: ``(B,)`` local node -> ``s_g``: ``(B, output_dim)``."""
        feat = self.feat_drop(self.batch_norm(feat, node_mask))
        last_feat = feat[torch.arange(feat.size(0), device=feat.device), last]
        e = self.fc_e(torch.sigmoid(self.fc_u(feat) + self.fc_v(last_feat).unsqueeze(1))).squeeze(-1)
        beta = torch.softmax(e.masked_fill(~node_mask, torch.finfo(e.dtype).min), dim=1)
        return self.fc_out((beta.unsqueeze(-1) * feat).sum(1))
