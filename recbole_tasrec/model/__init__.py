"""Models of this package (looked up by name before RecBole's: ``recbole_tasrec.config.get_model``).

TASRec, and the baselines RecBole lacks: the paper's LESSR and CSRM, and the nearest-neighbour methods SKNN,
V-SKNN and STAN. Each loads on first use (``recbole_tasrec.model.TASRec`` imports only TASRec's modules).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["CSRM", "LESSR", "SKNN", "STAN", "TASRec", "VSKNN"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(f"{__name__}.{name.lower()}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
