r"""Eq. 8-9 as one autograd function: scores over every item, softmax and cross-entropy, padding masked.

.. math::
    \hat y = \mathrm{softmax}(s X^\top), \qquad
    \mathcal L = -\frac{1}{B} \sum_b \log \hat y_{b, t_b}

with the padding item's score set to ``-inf`` (it takes no probability). The composition of torch ops
(``s @ X.T``, ``index_fill``, ``cross_entropy``) keeps four ``(B, n_items)`` tensors alive and walks them
about ten times; at 20,000 items and batch 128 that traffic is a sixth of a training step. Here the scores
live in one buffer: it becomes ``exp(scores - max)`` in the forward pass and the softmax's gradient in the
backward pass, so the step reads and writes it four times. Same maths, same gradients (tested against the
composition). torch only.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["full_softmax_cross_entropy"]


class _FullSoftmaxCrossEntropy(torch.autograd.Function):
    """The buffer holds the scores transposed, ``X s^T`` of shape ``(n, B)``: with ``B`` much smaller than
    ``n``, MKL computes that product faster than ``s X^T`` (``benchmarks/bench_output_layer.py``), and the two
    backward products cost the same either way."""

    @staticmethod
    def forward(ctx, session: Tensor, items: Tensor, target: Tensor, masked_item: int) -> Tensor:  # type: ignore[override]
        scores = items @ session.t()  # Eq. 8's s X^T, transposed: (n, B)
        scores[masked_item] = float("-inf")
        samples = torch.arange(scores.size(1), device=scores.device)
        target_scores = scores[target, samples]
        top = scores.amax(0)
        exp = scores.sub_(top).exp_()  # the buffer now holds exp(scores - max)
        total = exp.sum(0)
        loss = (top + total.log() - target_scores).mean()
        ctx.save_for_backward(session, items, target, exp, total)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss: Tensor):  # type: ignore[override]
        session, items, target, exp, total = ctx.saved_tensors
        # d loss / d scores = (softmax - onehot(target)) / B, written into the saved buffer (used once)
        grad = exp.div_(total)
        grad[target, torch.arange(grad.size(1), device=grad.device)] -= 1.0
        grad.mul_(grad_loss / grad.size(1))
        grad_session = grad.t() @ items if ctx.needs_input_grad[0] else None
        grad_items = grad @ session if ctx.needs_input_grad[1] else None
        return grad_session, grad_items, None, None


def full_softmax_cross_entropy(session: Tensor, items: Tensor, target: Tensor, masked_item: int = 0) -> Tensor:
    """Mean softmax cross-entropy of ``session @ items.T`` (``(B, d)``, ``(n, d)``) against ``target``
    (``(B,)`` long), with column ``masked_item`` (the padding item) out of the softmax.

    A target equal to ``masked_item`` gives an infinite loss, as it has no probability."""
    if session.dim() != 2 or items.dim() != 2 or session.size(1) != items.size(1):
        raise ValueError(f"session (B, d) and items (n, d) expected, got {tuple(session.shape)}, {tuple(items.shape)}")
    if target.shape != session.shape[:1]:
        raise ValueError(f"target must be ({session.size(0)},), got {tuple(target.shape)}")
    return _FullSoftmaxCrossEntropy.apply(session, items, target.long(), masked_item)
