"""Will the temporal graph help on this log? Day-by-day statistics before spending compute on training.

    uv run python -m recbole_tasrec.data.stats --dataset NAME [--key=value ...]

The temporal graph of day ``t`` holds only what happened on earlier days (Eq. 1), filtered by
``neighbor_threshold``. TASRec can gain over TASRec-base only where today's transitions are already in it:
the share of each day's transitions (and of its test samples' target transitions, ``last item -> target``)
that ``E_t``'s neighbour set holds, under the configured ``decay``, ``edge_weight``, ``temporal_window``,
``neighbor_threshold`` and ``prune_below``, is the number to look at (benchmarks/README.md). Beside it, the
share of the test target transitions that any earlier day's sessions hold (what streaming kNN and daily
continual training can use) and that the training days alone hold (what a model trained once can use).
Prints a table and a verdict in words (:func:`verdict`) and writes a PNG (``--output``, default
``<run_dir>/stats/<dataset>.png``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recbole_tasrec.data.daily_graphs import DailyGraphs
from recbole_tasrec.data.dataset import TEST, TASRecDataset
from recbole_tasrec.safe_write import atomic_path

COLUMNS = ["day", "split", "sessions", "samples", "new_items", "transitions", "held", "test_targets", "test_held",
           "test_earlier", "test_train_days"]  # fmt: skip
SHARES = ("held", "test_held", "test_earlier", "test_train_days")

#: TASRec minus TASRec-base test Recall@20 (percentage points, mean of 4 seeds) against the share of the test
#: targets' transitions the graph held, on the drift study's synthetic logs (300 items, 16 days of 120 sessions):
#: ``(held, gain)`` per log of benchmarks/results/drift_study.json (``held``; the means of ``recall@20``), in
#: order of ``held``. A wheel holds no benchmarks/ folder, so the points live here; tests/test_stats.py holds
#: them equal to the committed file.
DRIFT_STUDY: tuple[tuple[float, float], ...] = (
    (0.265496, 1.67),
    (0.315401, 4.67),
    (0.444805, 14.56),
    (0.489522, 26.82),
    (0.537891, 12.93),
)
DRIFT_STUDY_FILE = "benchmarks/results/drift_study.md"


def day_statistics(dataset: TASRecDataset, config: Any) -> pd.DataFrame:
    """One row per day: sessions, prefix samples, items never clicked before, the day's transitions (pairs
    within ``temporal_window``, Eq. 1) and the share of them in ``E_t``'s neighbour set, and the same for
    the test samples' target transitions (test days only; unseen targets dropped as the split drops them),
    with the shares of those that a session of an earlier day, or of a training day, holds (the same pairs
    within ``temporal_window`` the graph is built from, at any distance in the past)."""
    clicks = dataset.day_clicks
    day_pairs = clicks.transitions(int(config["temporal_window"]))
    first_seen = _FirstDay(day_pairs, dataset.item_num)
    graphs = DailyGraphs(
        day_pairs,
        dataset.item_num,
        decay=float(config["decay"]),
        edge_weight=config["edge_weight"],
        prune_below=float(config["prune_below"]),
        threshold=float(config["neighbor_threshold"]),
    )
    first_day = np.full(dataset.item_num, clicks.n_days, dtype=np.int64)
    np.minimum.at(first_day, clicks.item, np.repeat(np.arange(clicks.n_days), np.diff(clicks.offsets)))
    new_items = np.bincount(first_day, minlength=clicks.n_days + 1)[: clicks.n_days]
    rows = []
    for t in range(clicks.n_days):  # one row per day: the per-day work inside is vectorised
        sessions, items = clicks.day(t)
        neighbours = graphs.graph(t).neighbors(graphs.threshold)
        src, dst = day_pairs[t]
        same = sessions[1:] == sessions[:-1]
        tsrc, tdst = items[:-1][same], items[1:][same]
        test = dataset.session_split[sessions[1:][same]] == TEST
        if config["drop_unseen_targets"]:
            test &= np.isin(tdst, dataset.train_items)
        first = first_seen.of(tsrc[test], tdst[test])
        rows.append(
            {
                "day": t,
                "split": "test" if t >= dataset.n_train_days else "train",
                "sessions": int(np.unique(sessions).size),
                "samples": int(same.sum()),
                "new_items": int(new_items[t]),
                "transitions": int(src.size),
                "held": _held_share(neighbours, src, dst),
                "test_targets": int(test.sum()),
                "test_held": _held_share(neighbours, tsrc[test], tdst[test]),
                "test_earlier": _share(first < t),
                "test_train_days": _share(first < dataset.n_train_days),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


class _FirstDay:
    """The first day on which each transition ``src -> dst`` occurred, over all days' pairs at once."""

    def __init__(self, day_pairs: list[tuple[np.ndarray, np.ndarray]], n_items: int) -> None:
        self.n_items, self.n_days = n_items, len(day_pairs)
        keys = np.concatenate([src * n_items + dst for src, dst in day_pairs] + [np.zeros(0, np.int64)])
        days = np.repeat(np.arange(self.n_days), [src.size for src, _ in day_pairs])
        # np.unique keeps each key's first position, and the pairs come in day order
        self.keys, first = np.unique(keys, return_index=True)
        self.first_day = days[first]

    def of(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """The first day of each pair, ``n_days`` for a pair that never occurred."""
        keys = src * self.n_items + dst
        at = np.searchsorted(self.keys, keys)
        found = at < self.keys.size
        found[found] = self.keys[at[found]] == keys[found]
        first = np.full(keys.shape, self.n_days)
        first[found] = self.first_day[at[found]]
        return first


def _share(held: np.ndarray) -> float:
    """Share of true values (NaN for none at all)."""
    return float(held.mean()) if held.size else float("nan")


def _held_share(neighbours: Any, src: np.ndarray, dst: np.ndarray) -> float:
    """Share of the pairs ``(src, dst)`` that are edges of the neighbour set (NaN for no pairs)."""
    if src.size == 0:
        return float("nan")
    return _share(np.asarray(neighbours[src, dst]).ravel() != 0)


def target_share(stats: pd.DataFrame, column: str = "test_held") -> float:
    """A per-day share of the test target transitions (``test_held``, ...) over all test days, weighted by
    each day's targets (NaN without test targets)."""
    test = stats[stats["test_targets"] > 0]
    if not len(test):
        return float("nan")
    return float((test[column] * test["test_targets"]).sum() / test["test_targets"].sum())


def drift_study_gain(held: float) -> tuple[float, str]:
    """What the drift study says a graph holding ``held`` of the test target transitions gave TASRec over
    TASRec-base (pp of Recall@20), and how that figure was read: interpolated between the two logs around
    ``held``, or the nearest log's where ``held`` is outside the study's range (no extrapolation)."""
    shares, gains = map(np.array, zip(*DRIFT_STUDY, strict=True))
    if held < shares[0] or held > shares[-1]:
        end = 0 if held < shares[0] else -1
        side = "below" if end == 0 else "above"
        return float(gains[end]), f"{side} every log of the study; the nearest held {100 * shares[end]:.1f} %"
    right = int(np.searchsorted(shares, held))
    left = max(right - 1, 0)
    return float(np.interp(held, shares, gains)), (
        f"interpolated between {100 * shares[left]:.1f} % -> {gains[left]:+.1f} pp and "
        f"{100 * shares[right]:.1f} % -> {gains[right]:+.1f} pp"
    )


def _meaning(gain: float) -> str:
    if gain < 3:
        return "expect little from the graph: TASRec-base should do about as well as TASRec"
    if gain < 10:
        return "expect a modest gain from the graph"
    return "expect a clear gain from the graph"


def verdict(stats: pd.DataFrame) -> str:
    """The statistics' message in words: the share of the test targets' transitions the graph holds and what the
    drift study (:data:`DRIFT_STUDY`) says that share meant for TASRec over TASRec-base; the share earlier days'
    sessions hold (streaming kNN, daily continual training) and the training days' alone."""
    n_targets = int(stats["test_targets"].sum())
    if n_targets == 0:
        return "Verdict: no test sample, nothing to judge."
    graph, earlier, train = (target_share(stats, c) for c in ("test_held", "test_earlier", "test_train_days"))
    gain, how = drift_study_gain(graph)
    return (
        f"Verdict: the temporal graph holds {100 * graph:.1f} % of the {n_targets:,} test targets' transitions "
        f"(last item -> target). On the drift study's synthetic logs ({DRIFT_STUDY_FILE}, 4 seeds), a graph "
        f"holding that share gave TASRec {gain:+.1f} pp of test Recall@20 over TASRec-base ({how}): "
        f"{_meaning(gain)}.\n"
        f"The sessions of earlier days hold {100 * earlier:.1f} % of those transitions: what streaming kNN "
        f"(knn_streaming) and daily continual training can use; the training days alone hold {100 * train:.1f} %: "
        f"what a model trained once, a frozen graph or a kNN index of the training sessions can use. The graph "
        f"keeps {100 * graph:.1f} of the {100 * earlier:.1f} % (decay and neighbor_threshold forget the rest).\n"
    )


def format_table(stats: pd.DataFrame) -> str:
    """The statistics as a markdown table, shares in %, with a train/test summary line per split."""
    shown = stats.copy()
    for column in SHARES:
        shown[column] = (100 * shown[column]).map(lambda v: "-" if np.isnan(v) else f"{v:.1f}")
    header = "| " + " | ".join(COLUMNS) + " |\n" + "|---" * len(COLUMNS) + "|\n"
    body = "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in shown.itertuples(index=False))
    lines = []
    for split, part in stats.groupby("split", sort=False):
        weights = part["transitions"].to_numpy()
        held = np.nansum(part["held"].to_numpy() * weights) / max(weights.sum(), 1)
        lines.append(
            f"{split} days: {len(part)}, samples {part['samples'].sum():,}, transitions held {100 * held:.1f} %"
        )
    if stats["test_targets"].sum():
        lines.append(
            f"test target transitions held: {100 * target_share(stats):.1f} % of {stats['test_targets'].sum():,} "
            f"(earlier days' sessions {100 * target_share(stats, 'test_earlier'):.1f} %, training days' "
            f"{100 * target_share(stats, 'test_train_days'):.1f} %)"
        )
    return header + body + "\n" + "\n".join(lines) + "\n"


def plot(stats: pd.DataFrame, path: Path, title: str) -> None:
    """Two panels: the day's volume, and the share of its transitions the day's graph holds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for column in ("sessions", "samples", "new_items"):
        top.plot(stats["day"], stats[column], marker=".", label=column.replace("_", " "))
    top.set_ylabel("per day")
    top.legend(fontsize=8)
    top.set_title(title)
    bottom.plot(stats["day"], 100 * stats["held"], marker=".", label="day's transitions in E_t")
    bottom.plot(stats["day"], 100 * stats["test_held"], marker="o", label="test target transitions in E_t")
    bottom.plot(stats["day"], 100 * stats["test_earlier"], marker="x", label="... in earlier days' sessions")
    first_test = stats.loc[stats["split"] == "test", "day"].min()
    bottom.axvline(first_test - 0.5, color="grey", linestyle=":", label="first test day")
    bottom.set_ylabel("% held by the graph")
    bottom.set_xlabel("day")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    # the command line builds a configuration; the statistics take any mapping of settings, so data/ needs no Config
    from recbole_tasrec.config import Config

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog="Any --key=value: a RecBole setting.")
    parser.add_argument("--dataset", required=True, help="a folder under data_path (default atomic_data/)")
    parser.add_argument("--output", type=Path, help="the PNG (default <run_dir>/stats/<dataset>.png)")
    args, rest = parser.parse_known_args(argv)
    config = Config("TASRec", args.dataset, config_dict={"state": "WARNING"}, cmd_args=rest)
    stats = day_statistics(TASRecDataset(config), config)
    settings = ", ".join(f"{k}={config[k]}" for k in ("day_span", "day_start", "decay", "edge_weight",
                                                       "temporal_window", "neighbor_threshold"))  # fmt: skip
    print(f"{args.dataset}: {settings}\n")
    print(format_table(stats))
    print(verdict(stats))
    output = args.output or Path(config["run_dir"]) / "stats" / f"{args.dataset}.png"
    plot(stats, output, f"{args.dataset} ({settings})")
    print(f"chart: {output}")
    return stats


if __name__ == "__main__":
    main()
