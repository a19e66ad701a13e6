"""Data: converters, the synthetic generator, the temporal graph and the day-indexed RecBole data set."""

from recbole_tasrec.data.clicks import DayClicks, transition_pairs
from recbole_tasrec.data.daily_graphs import DailyGraphs
from recbole_tasrec.data.temporal_graph import TemporalGraph

__all__ = ["DailyGraphs", "DayClicks", "TASRecDataset", "TemporalGraph", "transition_pairs"]


def __getattr__(name: str):
    # RecBole-dependent pieces load on first use, so that converters and the graph stay light to import
    if name == "TASRecDataset":
        from recbole_tasrec.data.dataset import TASRecDataset

        return TASRecDataset
    raise AttributeError(f"module 'recbole_tasrec.data' has no attribute {name!r}")
