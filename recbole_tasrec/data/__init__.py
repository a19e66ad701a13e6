"""Data: converters, the synthetic generator, the temporal graph and the day-split RecBole data set.

Names load on first use: the converters (:mod:`.convert`, :mod:`.raw_log`) and the temporal graph import
neither torch nor RecBole.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module of this package that defines it.
_HOMES = {
    "DailyGraphs": "daily_graphs",
    "DayClicks": "clicks",
    "DaySplitDataset": "dataset",
    "TASRecDataset": "dataset",
    "TemporalGraph": "temporal_graph",
    "transition_pairs": "clicks",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
