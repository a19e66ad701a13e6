"""The generated data set that ``bench_training`` and ``bench_eval`` share: its flags, its name, its cache.

The required scale (:data:`REQUIRED`) is what the speed targets are about; a smaller data set makes a smoke
run, whose result goes to ``runs/bench_results/`` instead of ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT

#: the data scale the targets are stated at: items and sessions after the filters, calendar days
REQUIRED = {"items": 20_000, "sessions": 100_000, "days": 30}


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    """The generator's flags (defaults: the required scale) and the cache folder."""
    parser.add_argument(
        "--items", type=int, default=25_000, help="SyntheticConfig.n_items (25,000 leaves > 20,000 items after the "
        "5-click filter)"
    )  # fmt: skip
    parser.add_argument("--sessions-per-day", type=int, default=3_400)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=str(ROOT / "runs" / "bench_data"), help="the generated data's cache")


def data_flags(args: argparse.Namespace) -> list[str]:
    """The flags of :func:`add_data_flags` as given, to pass on to a worker process."""
    return [
        "--items", str(args.items), "--sessions-per-day", str(args.sessions_per_day), "--days", str(args.days),
        "--seed", str(args.seed), "--data-dir", str(args.data_dir),
    ]  # fmt: skip


def dataset_name(args: argparse.Namespace) -> str:
    """The cached data set's name: one per generator setting."""
    return f"bench_i{args.items}_s{args.sessions_per_day}_d{args.days}_seed{args.seed}"


def ensure_data(args: argparse.Namespace) -> dict[str, Any]:
    """Write the data set unless it is cached; return its raw statistics (before any filter)."""
    import numpy as np
    import pandas as pd

    from recbole_tasrec.data.synthetic import SyntheticConfig, write

    cfg = SyntheticConfig(n_items=args.items, sessions_per_day=args.sessions_per_day, n_days=args.days, seed=args.seed)
    name = dataset_name(args)
    path = Path(args.data_dir) / name / f"{name}.inter"
    generated = not path.exists()
    if generated:
        start = time.perf_counter()
        write(cfg, args.data_dir, name)
        print(f"generated {path} in {time.perf_counter() - start:.1f} s")
    df = pd.read_csv(path, sep="\t", header=0, names=["session", "item", "timestamp"])
    clicks_per_item = df.groupby("item").size()
    return {
        "file": str(path),
        "generated_now": generated,
        "synthetic_config": {
            "n_items": cfg.n_items,
            "sessions_per_day": cfg.sessions_per_day,
            "n_days": cfg.n_days,
            "seed": cfg.seed,
            "other_knobs": "SyntheticConfig defaults",
        },
        "clicks": len(df),
        "sessions": int(df["session"].nunique()),
        "items_clicked": int(clicks_per_item.size),
        "items_with_5_clicks": int(np.count_nonzero(clicks_per_item.to_numpy() >= 5)),
        "calendar_days": int((df["timestamp"] // 86_400).nunique()),
    }


def bench_settings(args: argparse.Namespace, run_dir: str) -> dict[str, Any]:
    """The RecBole settings every model gets on this data: a temporary run folder, quiet, the flags' sizes."""
    return {
        "data_path": str(Path(args.data_dir).resolve()),
        "run_dir": run_dir,
        "checkpoint_dir": run_dir,
        "show_progress": False,
        "state": "WARNING",
        "save_dataset": False,
        "embedding_size": args.embedding_size,
        "seed": args.seed,
        "use_gpu": args.device == "cuda",
    }
