r"""Adam that updates only the rows of a sparse gradient (lazy Adam), for an item table under the sampled softmax.

With ``loss_type: sampled`` a training step touches a few thousand rows of a million-row item table, but Adam
reads and writes the whole table, its two moments and a dense gradient every step: at 1M x 100 that is several
table-sized passes (zero-fill, scatter, the update) for ~1,000 rows of signal. ``lazy_adam: True`` gives the
table a sparse gradient and updates the rows it holds only:

.. math::
    g = \nabla_{x_i} + \lambda x_i, \quad m_i \leftarrow \beta_1 m_i + (1 - \beta_1) g, \quad
    v_i \leftarrow \beta_2 v_i + (1 - \beta_2) g^2, \quad
    x_i \leftarrow x_i - \eta \frac{m_i / (1 - \beta_1^t)}{\sqrt{v_i / (1 - \beta_2^t)} + \epsilon}

for the rows ``i`` of the gradient only (``t`` the step count, as TensorFlow's LazyAdam). It differs from Adam
(the default): a row absent from a step keeps its moments and its value (Adam would decay the moments, move
the row by its momentum and shrink it by the weight decay). A dense gradient gets Adam's own update (the same
formula on every row, equal to ``torch.optim.Adam``), so every other parameter trains as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

__all__ = ["LazyAdam"]


class LazyAdam(torch.optim.Optimizer):
    """Adam (``lr``, ``betas``, ``eps``, L2 ``weight_decay``) with lazy rows for sparse gradients (module docstring)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None if closure is None else closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                state["step"] += 1
                step_size = group["lr"] / (1 - beta1 ** state["step"])
                correction = (1 - beta2 ** state["step"]) ** 0.5
                grad = param.grad
                if grad.is_sparse:
                    grad = grad.coalesce()
                    rows, grad = grad.indices()[0], grad.values()
                    self._update(param, rows, grad, state, group, step_size, correction)
                else:
                    self._update(param, None, grad, state, group, step_size, correction)
        return loss

    @staticmethod
    def _update(
        param: Tensor, rows: Tensor | None, grad: Tensor, state: dict, group: dict, step_size: float, correction: float
    ) -> None:
        """Adam's update of ``param[rows]`` (``rows=None``: every row) from their gradient ``grad``."""
        beta1, beta2 = group["betas"]
        value = param if rows is None else param[rows]
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * value
        exp_avg = state["exp_avg"] if rows is None else state["exp_avg"][rows]
        exp_avg_sq = state["exp_avg_sq"] if rows is None else state["exp_avg_sq"][rows]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denominator = (exp_avg_sq.sqrt() / correction).add_(group["eps"])
        if rows is None:
            param.addcdiv_(exp_avg, denominator, value=-step_size)
        else:
            state["exp_avg"][rows], state["exp_avg_sq"][rows] = exp_avg, exp_avg_sq
            param[rows] = value.addcdiv(exp_avg, denominator, value=-step_size)
