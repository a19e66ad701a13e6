"""When does the temporal graph help? TASRec minus TASRec-base test Recall@20 on generated drifting logs.

    uv run python -m benchmarks.drift_study [--seeds 2] [--periods 2,3,16] [--p-follow 0.5,0.7] [--resume]

One generated log per ``transition_period`` (days an item's successors hold before they are redrawn: small =
fast drift; at least the log's length = no drift), and at the graph-variants period one per ``--p-follow``
(the share of clicks that follow the current transitions), written under ``--data-dir`` (not the project). On each
log: TASRec-base, and TASRec with the default graph settings; on one log (``--graph-variants-at``, default the
period 3 of tests/test_learning.py) also TASRec with each graph setting changed alone: ``edge_weight: count``,
``neighbor_threshold: 0.25``, ``temporal_window: 2`` and ``decay`` 0.25 and 0.75 (default 0.5).
Beside each log: the share of its test target transitions that the day's graph holds
(``recbole_tasrec.data.stats``), the number to check on a real log.
Writes ``benchmarks/results/drift_study.{json,md,png}`` (``--output``: the json, the others beside it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import RESULTS, ROOT, pyplot, result_header, save_figure, write_result, write_text
from recbole_tasrec import run_recbole_tasrec
from recbole_tasrec.config import Config
from recbole_tasrec.data.dataset import TASRecDataset
from recbole_tasrec.data.stats import day_statistics, target_share
from recbole_tasrec.data.synthetic import SyntheticConfig, write

#: small logs (~5k training samples) so that the whole study runs in minutes on 2 cores
LOG = {"n_items": 300, "sessions_per_day": 120, "n_days": 16, "p_follow": 0.9, "seed": 11}
#: a short budget, and the package's default schedule and early stopping
TRAINING = {"epochs": 4, "embedding_size": 32, "n_layers": 1, "train_batch_size": 64, "show_progress": False,
            "state": "WARNING"}  # fmt: skip
VARIANTS = {
    "TASRec-base": {"use_temporal_graph": False},
    "TASRec": {},
    "TASRec count": {"edge_weight": "count"},
    "TASRec threshold 0.25": {"neighbor_threshold": 0.25},
    "TASRec window 2": {"temporal_window": 2},
    "TASRec decay 0.25": {"decay": 0.25},
    "TASRec decay 0.75": {"decay": 0.75},
}


def test_target_share(name: str, settings: dict[str, Any]) -> float:
    """Share of the test samples' target transitions held by their day's graph (see data/stats.py)."""
    config = Config("TASRec", name, config_dict=settings)
    return target_share(day_statistics(TASRecDataset(config), config))


def log_key(period: int, p_follow: float) -> str:
    return f"transition_period={period},p_follow={p_follow:g}"


def logs_for(args: argparse.Namespace) -> list[tuple[int, float]]:
    """Every period at the base ``p_follow``, and every ``p_follow`` at the period that gets the graph variants."""
    base = LOG["p_follow"]
    periods = [int(p) for p in args.periods.split(",")]
    follows = [float(f) for f in args.p_follow.split(",")] if args.p_follow else []
    return [(p, base) for p in periods] + [(args.graph_variants_at, f) for f in follows if f != base]


def runs_for(period: int, p_follow: float, graph_variants_at: int) -> list[str]:
    every = period == graph_variants_at and p_follow == LOG["p_follow"]
    return list(VARIANTS) if every else ["TASRec-base", "TASRec"]


def report(data: dict, out: Path) -> None:
    """The table (mean and std over seeds) and the chart: the gain against each drift knob, one line per
    graph setting."""
    lines = ["| transition_period | p_follow | test targets held (%) | variant | seeds | Recall@20 (%) "
             "| minus TASRec-base (pp) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    fig, axes = pyplot().subplots(1, 2, figsize=(11, 4))
    entries = sorted(data["logs"].values(), key=lambda e: (e["p_follow"], e["transition_period"]))
    for variant in VARIANTS:
        curves: dict[str, tuple[list, list]] = {"transition_period": ([], []), "p_follow": ([], [])}
        for entry in entries:
            values = entry["recall@20"].get(variant)
            if not values:
                continue
            mean, std = 100 * float(np.mean(values)), 100 * float(np.std(values))
            gain = mean - 100 * float(np.mean(entry["recall@20"]["TASRec-base"]))
            lines.append(f"| {entry['transition_period']} | {entry['p_follow']:g} | {100 * entry['held']:.1f} | "
                         f"{variant} | {len(values)} | {mean:.2f} +- {std:.2f} | {gain:+.2f} |")  # fmt: skip
            if entry["p_follow"] == data["log"]["p_follow"]:
                curves["transition_period"][0].append(entry["transition_period"])
                curves["transition_period"][1].append(gain)
            if entry["transition_period"] == data["graph_variants_at"]:
                curves["p_follow"][0].append(entry["p_follow"])
                curves["p_follow"][1].append(gain)
        for ax, (xs, ys) in zip(axes, curves.values(), strict=True):
            if variant != "TASRec-base" and len(xs) > 1:
                ax.plot(xs, ys, marker="o", label=variant)
    for ax, knob, meaning in zip(axes, ("transition_period", "p_follow"),
                                 ("days a successor set holds; small = fast drift",
                                  "share of clicks that follow the current transitions"), strict=True):  # fmt: skip
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_xlabel(f"{knob} ({meaning})")
        ax.set_ylabel("TASRec minus TASRec-base, test Recall@20 (pp)")
        ax.legend(fontsize=7)
    axes[0].set_xscale("log", base=2)
    axes[0].set_title(f"p_follow {data['log']['p_follow']:g}, mean over seeds")
    axes[1].set_title(f"transition_period {data['graph_variants_at']}, mean over seeds")
    save_figure(fig, out.with_suffix(".png"))
    write_text(out.with_suffix(".md"), "\n".join([f"Command: `{data['command']}`", "", *lines]) + "\n")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--periods", default="2,3,16", help="transition_period values, comma-separated")
    parser.add_argument("--p-follow", default="", help="p_follow values for the graph-variants period, comma-separated")
    parser.add_argument("--graph-variants-at", type=int, default=3, help="the log that also gets the graph variants")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/recbole_tasrec_drift"))
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "drift_study")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS / "drift_study.json")
    args = parser.parse_args(argv)
    out = args.output
    data = json.loads(out.read_text()) if args.resume and out.exists() else {"logs": {}}
    data.update({**result_header("drift_study", argv, threads=None), "seeds": args.seeds,
                 "log": LOG, "training": TRAINING, "variants": VARIANTS,
                 "graph_variants_at": args.graph_variants_at})  # fmt: skip
    for period, p_follow in logs_for(args):
        name = f"drift_p{period}_f{round(100 * p_follow)}"
        write(SyntheticConfig(**{**LOG, "p_follow": p_follow}, transition_period=period), args.data_dir, name)
        settings = {"data_path": str(args.data_dir), "run_dir": str(args.run_dir), **TRAINING}
        entry = data["logs"].setdefault(log_key(period, p_follow), {"recall@20": {}})
        entry.update(transition_period=period, p_follow=p_follow, held=test_target_share(name, settings))
        for variant in runs_for(period, p_follow, args.graph_variants_at):
            done = entry["recall@20"].setdefault(variant, [])
            for seed in range(len(done) + 1, args.seeds + 1):
                start = time.time()
                config = {**settings, **VARIANTS[variant], "seed": seed}
                result = run_recbole_tasrec("TASRec", name, config_dict=config, saved=False)
                done.append(result["test_result"]["recall@20"])
                write_result(data, out)
                seconds = time.time() - start
                print(f"{name} {variant} seed {seed}: {done[-1]:.4f} ({seconds:.0f} s)", flush=True)
    write_result(data, out)
    report(data, out)
    print(out.with_suffix(".md").read_text())
    return data


if __name__ == "__main__":
    main()
