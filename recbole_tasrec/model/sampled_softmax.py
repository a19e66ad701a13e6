r"""A sampled softmax for large catalogues: Eq. 9's cross-entropy against the target and ``K`` shared negatives.

The full softmax (Eq. 8-9) scores every item: at a million items it is nearly the whole cost of a training
step. ``loss_type: sampled`` replaces its normaliser by an estimate from ``K = num_negatives`` items drawn once
per batch (shared by every sample) from a popularity distribution ``Q``, with the log-Q correction:

.. math::
    q_j \propto (c_j + 1)^{\beta}, \qquad
    \hat Z_b = e^{o_{b,t_b}} + \sum_{k=1}^{K} [n_k \ne t_b] \, \frac{e^{o_{b,n_k}}}{K q_{n_k}}, \qquad
    \mathcal L = \frac{1}{B} \sum_b \bigl(\log \hat Z_b - o_{b,t_b}\bigr)

with ``o = s X^T`` (Eq. 8), ``c_j`` item ``j``'s count among the training targets, ``beta = negative_power``,
``n_1..n_K`` drawn with replacement and the padding item never drawn (``q_0 = 0``). In logits: each negative's
logit is shifted by ``-log(K q_j)`` (the log-Q correction), the true target's own logit is kept uncorrected
(it is known to be in the sum), and a negative that happens to be the target (an accidental hit) is masked.

Why this form: every draw has the same expectation, so
``E[\hat Z_b] = e^{o_t} + \sum_{j \ne t, j \ne 0} e^{o_j} = Z_b``, the full softmax's normaliser, exactly (the
``+1`` keeps every item in ``Q``'s support, so none is left out of the expectation). The loss, a log of that
estimate, is biased low by Jensen's inequality and converges to Eq. 9 as ``K`` grows; with every item as a
negative exactly once and no correction (``log_weight = 0``) it *is* Eq. 9 (tested). Evaluation always scores
every item (``full_sort_predict``): only training samples.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = [
    "LOSS_TYPES",
    "PopularitySampler",
    "negative_sampler",
    "sampled_softmax_cross_entropy",
    "training_target_counts",
]

LOSS_TYPES = ("CE", "sampled")


def sampled_softmax_cross_entropy(
    session: Tensor,
    items: Tensor,
    target: Tensor,
    negatives: Tensor,
    log_weight: Tensor,
    masked_item: int = 0,
    sparse: bool = False,
) -> Tensor:
    r"""Mean of ``log \hat Z_b - o_{b,t_b}`` (module docstring) for sessions ``(B, d)`` against the item table
    ``(n, d)``: ``target`` ``(B,)``, shared ``negatives`` ``(K,)`` with their ``log_weight`` ``(K,)`` (``-log(K
    q_j)``; zeros for an exhaustive list). Negatives equal to a sample's target or to ``masked_item`` are masked.

    Only ``B x K`` logits are materialised, and the gradient reaches the ``K + B`` rows used (``sparse``: as a
    sparse gradient of those rows, for ``lazy_adam``; else a dense table)."""
    if session.dim() != 2 or items.dim() != 2 or session.size(1) != items.size(1):
        raise ValueError(f"session (B, d) and items (n, d) expected, got {tuple(session.shape)}, {tuple(items.shape)}")
    if negatives.dim() != 1 or log_weight.shape != negatives.shape:
        shapes = f"{tuple(negatives.shape)}, {tuple(log_weight.shape)}"
        raise ValueError(f"negatives and log_weight must be (K,), got {shapes}")
    target = target.long()
    rows = torch.nn.functional.embedding(torch.cat([target, negatives]), items, sparse=sparse)
    target_logit = (session * rows[: len(target)]).sum(-1)  # o_{b, t_b}
    negative_logits = session @ rows[len(target) :].t() + log_weight.to(session.dtype)
    hit = (negatives.unsqueeze(0) == target.unsqueeze(1)) | (negatives == masked_item).unsqueeze(0)
    negative_logits = negative_logits.masked_fill(hit, float("-inf"))
    logits = torch.cat([target_logit.unsqueeze(1), negative_logits], dim=1)
    return (torch.logsumexp(logits, dim=1) - target_logit).mean()


class PopularitySampler:
    """Draws the shared negatives of a batch from ``q_j ∝ (c_j + 1)^power`` (the padding item never).

    Not a module: it holds no parameter and stays out of ``state_dict`` (a checkpoint loads with either loss).
    Draws use torch's global generator, so ``seed`` makes them reproducible."""

    def __init__(self, counts: Tensor, num_negatives: int, power: float = 0.75, padding_idx: int = 0) -> None:
        if isinstance(num_negatives, bool) or int(num_negatives) < 1:
            raise ValueError(f"num_negatives must be a positive integer, got {num_negatives!r}")
        if not 0.0 <= float(power) <= 1.0 or counts.dim() != 1 or counts.numel() < 2:
            raise ValueError(f"negative_power must lie in [0, 1] and counts be one count per item, got {power!r}")
        q = (counts.double().clamp(min=0) + 1.0).pow(float(power))
        q[padding_idx] = 0.0
        self.probabilities = q / q.sum()
        self.num_negatives = int(num_negatives)
        self._cdf = torch.cumsum(self.probabilities, 0)
        self._log_kq = torch.log(self.num_negatives * self.probabilities).float()

    def draw(self, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """``K`` negatives (long) and their ``log_weight = -log(K q_j)``, on ``device``."""
        if self._cdf.device != torch.device(device or "cpu"):
            self._cdf, self._log_kq = self._cdf.to(device), self._log_kq.to(device)
        u = torch.rand(self.num_negatives, dtype=torch.float64, device=self._cdf.device) * self._cdf[-1]
        negatives = torch.searchsorted(self._cdf, u, right=True).clamp_(max=self._cdf.numel() - 1)
        return negatives, -self._log_kq[negatives]

    def loss(self, session: Tensor, items: Tensor, target: Tensor, sparse: bool = False) -> Tensor:
        """The sampled loss of one batch with fresh negatives (``sparse``: a sparse gradient for ``items``)."""
        negatives, log_weight = self.draw(session.device)
        return sampled_softmax_cross_entropy(session, items, target, negatives, log_weight, sparse=sparse)


def training_target_counts(dataset: Any, n_items: int) -> Tensor:
    """How often each item is a training target (``c_j``), from a RecBole data set's interactions."""
    field = getattr(dataset, "iid_field", None)
    if field is None or getattr(dataset, "inter_feat", None) is None:
        raise ValueError("loss_type: sampled needs the training data set (its item counts draw the negatives)")
    return torch.bincount(torch.as_tensor(dataset.inter_feat[field]).long().flatten(), minlength=n_items)[:n_items]


def negative_sampler(config: Any, dataset: Any, n_items: int, model: str) -> PopularitySampler | None:
    """The sampler ``loss_type`` asks for: ``None`` for ``CE`` (Eq. 9's full softmax), a
    :class:`PopularitySampler` for ``sampled`` (keys ``num_negatives``, ``negative_power``). ``dataset=None``
    (a model built to score, without training data) only checks the key and gives ``None``."""
    loss_type = config["loss_type"]
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"{model}: loss_type must be one of {', '.join(LOSS_TYPES)}, got {loss_type!r}")
    if loss_type == "CE":
        return None
    missing = [key for key in ("num_negatives", "negative_power") if config[key] is None]
    if missing:
        keys = " and ".join(missing)
        raise ValueError(f"{model}: loss_type: sampled needs {keys} (see properties/model/TASRec.yaml)")
    if dataset is None:
        return None
    counts = training_target_counts(dataset, n_items)
    return PopularitySampler(counts, int(config["num_negatives"]), float(config["negative_power"]))
