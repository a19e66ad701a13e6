"""SKNN, V-SKNN and STAN at their defaults: test Recall@20 and MRR@20 on the demo set and the Diginetica sample.

    uv run python -m benchmarks.knn_strength --label after --dataset sample= --dataset diginetica=/tmp/knn_data

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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import RESULTS, load_average, result_header, write_json
from recbole_tasrec import run_recbole_tasrec

OUTPUT = RESULTS / "knn_strength.json"
MODELS = ("SKNN", "VSKNN", "STAN")
METRICS = ("recall@20", "mrr@20")


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
        **result_header("knn_strength", argv, threads=None),
        "loadavg_end": load_average(),
        "settings": overrides,
        "results": figures,
    }
    write_json(output, recorded)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
