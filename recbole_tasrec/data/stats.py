"""Will the temporal graph help on this log? Day-by-day statistics before spending compute on training.

    uv run python -m recbole_tasrec.data.stats --dataset NAME [--key=value ...]

The temporal graph of day ``t`` holds only what happened on earlier days (Eq. 1), filtered by
``neighbor_threshold``. TASRec can gain over TASRec-base only where today's transitions are already in it:
the share of each day's transitions (and of its test samples' target transitions, ``last item -> target``)
that ``E_t``'s neighbour set holds, under the configured ``decay``, ``edge_weight``, ``temporal_window``,
``neighbor_threshold`` and ``prune_below``, is the number to look at (issue 8; benchmarks/README.md).
Prints a table and writes a PNG (``--output``, default ``<run_dir>/stats/<dataset>.png``).
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

COLUMNS = ["day", "split", "sessions", "samples", "new_items", "transitions", "held", "test_targets", "test_held"]


def day_statistics(dataset: TASRecDataset, config: Any) -> pd.DataFrame:
    """One row per day: sessions, prefix samples, items never clicked before, the day's transitions (pairs
    within ``temporal_window``, Eq. 1) and the share of them in ``E_t``'s neighbour set, and the same for
    the test samples' target transitions (test days only; unseen targets dropped as the split drops them)."""
    clicks = dataset.day_clicks
    day_pairs = clicks.transitions(int(config["temporal_window"]))
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
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def _held_share(neighbours: Any, src: np.ndarray, dst: np.ndarray) -> float:
    """Share of the pairs ``(src, dst)`` that are edges of the neighbour set (NaN for no pairs)."""
    if src.size == 0:
        return float("nan")
    return float((np.asarray(neighbours[src, dst]).ravel() != 0).mean())


def format_table(stats: pd.DataFrame) -> str:
    """The statistics as a markdown table, shares in %, with a train/test summary line per split."""
    shown = stats.copy()
    for column in ("held", "test_held"):
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
    test = stats[stats["test_targets"] > 0]
    if len(test):
        share = (test["test_held"] * test["test_targets"]).sum() / test["test_targets"].sum()
        lines.append(f"test target transitions held: {100 * share:.1f} % of {test['test_targets'].sum():,}")
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
    settings = ", ".join(f"{k}={config[k]}" for k in ("day_span", "decay", "edge_weight", "temporal_window",
                                                       "neighbor_threshold"))  # fmt: skip
    print(f"{args.dataset}: {settings}\n")
    print(format_table(stats))
    output = args.output or Path(config["run_dir"]) / "stats" / f"{args.dataset}.png"
    plot(stats, output, f"{args.dataset} ({settings})")
    print(f"chart: {output}")
    return stats


if __name__ == "__main__":
    main()
