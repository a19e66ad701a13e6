r"""TASRec's soft-attention session readout (Eq. 6, 7), SR-GNN's readout. torch only."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from recbole_tasrec.model.init import uniform_init_

__all__ = ["AttentionReadout"]


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

    Padded positions (``mask == False``) are dropped before anything touches them, so their
    values change neither the output nor any gradient; :meth:`packed` takes the real positions only.
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
        uniform_init_(self.parameters(), self.hidden_size)

    def forward(self, z: Tensor, mask: Tensor, last: Tensor) -> Tensor:
        """``z``: ``(B, L, d)``, ``mask``: ``(B, L)`` bool, ``last``: ``(B, d)`` -> ``s``: ``(B, d)``."""
        return self.packed(z[mask], mask.nonzero()[:, 0], last)

    def packed(self, z: Tensor, session: Tensor, last: Tensor) -> Tensor:
        """The same on the real positions only: ``z``: ``(M, d)``, ``session``: ``(M,)`` the session (row of
        ``last``) of each, ``last``: ``(B, d)`` -> ``s``: ``(B, d)``."""
        beta = self.linear_three(torch.sigmoid(self.linear_one(last).index_select(0, session) + self.linear_two(z)))
        pooled = last.new_zeros(last.shape).index_add_(0, session, beta * z)
        return self.linear_transform(torch.cat([pooled, last], dim=-1))
