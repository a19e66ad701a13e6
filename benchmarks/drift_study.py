"""When does the temporal graph help? TASRec minus TASRec-base test Recall@20 on generated drifting logs.

    uv run python benchmarks/drift_study.py [--seeds 2] [--periods 2,3,16] [--resume]

One generated log per ``transition_period`` (days an item's successors hold before they are redrawn: small =
fast drift; at least the log's length = no drift), written under ``--data-dir`` (not the project). On each
log: TASRec-base, and TASRec with the default graph settings; on one log (``--graph-variants-at``, default the
period 3 of tests/test_learning.py) also TASRec with each graph setting changed alone: ``edge_weight: count``,
``neighbor_threshold: 0.25``, ``temporal_window: 2`` and ``decay`` 0.25 and 0.75 (default 0.5).
Beside each log: the share of its test target transitions that the day's graph holds
(``recbole_tasrec.data.stats``), the number to check on a real log.
Writes ``benchmarks/results/drift_study.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from recbole_tasrec import run_recbole_tasrec
from recbole_tasrec.config import Config
from recbole_tasrec.data.dataset import TASRecDataset
from recbole_tasrec.data.stats import day_statistics
from recbole_tasrec.data.synthetic import SyntheticConfig, write

ROOT = Path(__file__).resolve().parents[1]
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
    stats = day_statistics(TASRecDataset(config), config)
    test = stats[stats["test_targets"] > 0]
    return float((test["test_held"] * test["test_targets"]).sum() / test["test_targets"].sum())


def runs_for(period: int, graph_variants_at: int) -> list[str]:
    return list(VARIANTS) if period == graph_variants_at else ["TASRec-base", "TASRec"]


def save_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def report(data: dict, out: Path) -> None:
    """The table (mean over seeds) and the chart: gain against drift, one line per graph setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["| transition_period | test targets held (%) | variant | seeds | Recall@20 (%) | minus TASRec-base (pp) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    fig, ax = plt.subplots(figsize=(6, 4))
    for variant in VARIANTS:
        xs, ys = [], []
        for period, entry in sorted(data["logs"].items(), key=lambda kv: int(kv[0])):
            if variant not in entry["recall@20"]:
                continue
            mean = float(np.mean(entry["recall@20"][variant]))
            gain = mean - float(np.mean(entry["recall@20"]["TASRec-base"]))
            seeds = len(entry["recall@20"][variant])
            lines.append(
                f"| {period} | {100 * entry['held']:.1f} | {variant} | {seeds} | {100 * mean:.2f} | {100 * gain:+.2f} |"
            )
            xs.append(int(period))
            ys.append(100 * gain)
        if variant != "TASRec-base" and xs:
            ax.plot(xs, ys, marker="o", label=variant)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("transition_period (days a successor set holds; small = fast drift)")
    ax.set_ylabel("TASRec minus TASRec-base, test Recall@20 (pp)")
    ax.set_title("drift study, mean over seeds (see the table)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = out.with_name("drift_study.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out.with_suffix(".png"))
    md = out.with_suffix(".md")
    md.with_name("drift_study.md.tmp").write_text("\n".join([f"Command: `{data['command']}`", "", *lines]) + "\n")
    os.replace(md.with_name("drift_study.md.tmp"), md)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--periods", default="2,3,16", help="transition_period values, comma-separated")
    parser.add_argument("--graph-variants-at", type=int, default=3, help="the log that also gets the graph variants")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/recbole_tasrec_drift"))
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "drift_study")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    periods = [int(p) for p in args.periods.split(",")]
    out = ROOT / "benchmarks" / "results" / "drift_study.json"
    data = json.loads(out.read_text()) if args.resume and out.exists() else {"logs": {}}
    command = " ".join(sys.argv[1:] if argv is None else argv)
    data.update({"command": f"uv run python benchmarks/drift_study.py {command}", "seeds": args.seeds,
                 "log": LOG, "training": TRAINING, "variants": VARIANTS})  # fmt: skip
    for period in periods:
        name = f"drift_p{period}"
        write(SyntheticConfig(**LOG, transition_period=period), args.data_dir, name)
        settings = {"data_path": str(args.data_dir), "run_dir": str(args.run_dir), **TRAINING}
        entry = data["logs"].setdefault(str(period), {"recall@20": {}})
        entry["held"] = test_target_share(name, settings)
        for variant in runs_for(period, args.graph_variants_at):
            done = entry["recall@20"].setdefault(variant, [])
            for seed in range(len(done) + 1, args.seeds + 1):
                start = time.time()
                config = {**settings, **VARIANTS[variant], "seed": seed}
                result = run_recbole_tasrec("TASRec", name, config_dict=config, saved=False)
                done.append(result["test_result"]["recall@20"])
                save_json(out, data)
                seconds = time.time() - start
                print(f"period {period} {variant} seed {seed}: {done[-1]:.4f} ({seconds:.0f} s)", flush=True)
    save_json(out, data)
    report(data, out)
    print(out.with_suffix(".md").read_text())
    return data


if __name__ == "__main__":
    main()
