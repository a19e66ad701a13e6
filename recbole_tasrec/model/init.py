"""SR-GNN's weight initialisation, shared by every layer that follows it (TASRec, its GCN, the readout, the GGNN)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from torch import nn


def uniform_init_(weights: Iterable[nn.Parameter], size: int) -> None:
    """Draw every weight from ``U(-1/sqrt(size), 1/sqrt(size))`` in place, in the order given (SR-GNN's
    ``reset_parameters``; ``size`` is the hidden or embedding size ``d``)."""
    bound = 1.0 / math.sqrt(size)
    for weight in weights:
        nn.init.uniform_(weight, -bound, bound)
