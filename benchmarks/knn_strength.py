"""SKNN, V-SKNN and STAN at their defaults: test Recall@20 and MRR@20 on the demo set and the Diginetica sample.

    uv run python benchmarks/knn_strength.py --label after --dataset sample= --dataset diginetica=/tmp/knn_data

Each ``--dataset NAME=DATA_PATH`` is run through :func:`recbole_tasrec.run_recbole_tasrec` (an empty path: the
package's default ``data_path``). The Diginetica sample is converted first, outside the repository, under the
name ``diginetica`` so that ``properties/dataset/diginetica.yaml`` applies (as in the harness):
``uv run python -m recbole_tasrec.data.convert diginetica --input
../shared/data/diginetica-sample/train-item-views.csv --output-dir /tmp/knn_data``.
The kNN models have no random state, so one run each.
The figures go under ``--label`` into ``benchmarks/results/knn_strength.json`` (other labels are kept), so a run
of the code before a change (``--label before``, from that commit) and after it sit side by side.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from bench_training import run_identity

from recbole_tasrec import run_recbole_tasrec
from recbole_tasrec.data.atomic import write_atomic_text

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "benchmarks" / "results" / "knn_strength.json"
MODELS = ("SKNN", "VSKNN", "STAN")
METRICS = ("recall@20", "mrr@20")


def commit() -> str:
    """The checked-out commit, with ``+dirty`` when the working tree has uncommitted changes."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True)
    return head + ("+dirty" if dirty.stdout.strip() else "")


def measure(model: str, dataset: str, data_path: str, run_dir: str, overrides: dict[str, str]) -> dict[str, Any]:
    """One run of ``model`` (defaults, then ``overrides``): its test and validation metrics and its wall time."""
    settings: dict[str, Any] = {"run_dir": run_dir, "show_progress": False, "state": "WARNING", **overrides}
    if data_path:
        settings["data_path"] = data_path
    start = time.perf_counter()
    result = run_recbole_tasrec(model, dataset, config_dict=settings, saved=False)
    assert result is not None  # one process: always rank 0
    return {
        "test": {key: round(float(result["test_result"][key]), 4) for key in METRICS},
        "valid": {key: round(float(result["best_valid_result"][key]), 4) for key in METRICS},
        "seconds": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="the key these figures go under, e.g. before / after")
    parser.add_argument(
        "--dataset", action="append", required=True, metavar="NAME=DATA_PATH", help="a data set (repeatable)"
    )
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated kNN models")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a setting other than the default (repeatable)"
    )
    parser.add_argument("--output", default=str(OUTPUT), help="the JSON file to merge the figures into")
    args = parser.parse_args(argv)
    datasets = dict(entry.partition("=")[::2] for entry in args.dataset)
    overrides = {key: yaml.safe_load(value) for key, _, value in (entry.partition("=") for entry in args.set)}
    figures: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="knn_strength_") as run_dir:
        for dataset, data_path in datasets.items():
            for model in args.models.split(","):
                figures.setdefault(dataset, {})[model] = row = measure(model, dataset, data_path, run_dir, overrides)
                print(f"{dataset} {model}: {row}", flush=True)
    output = Path(args.output)
    recorded = json.loads(output.read_text()) if output.exists() else {}
    recorded[args.label] = {
        **run_identity("knn_strength", argv),
        "commit": commit(),
        "settings": overrides,
        "results": figures,
    }
    write_atomic_text(output, json.dumps(recorded, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
