"""On a machine with a CUDA GPU: the GPU tests, then the training benchmark on the GPU.

1. ``pytest tests/test_gpu.py``: scores equal to the CPU's, the temporal graph's ``P`` on the device and
   cached (no per-step copy), a fused-Adam training step on the GPU, an end-to-end run and serving.
2. ``benchmarks.bench_training --device cuda`` for TASRec and SRGNN: samples/s and peak GPU memory of each.

Writes ``benchmarks/results/gpu_<date>.json`` (the GPU, the test outcome, the figures) and the training
benchmark's own JSON beside it. Without a GPU it stops with a message and writes nothing.

    uv run python -m benchmarks.gpu_check                # ~3 min on a GPU machine
    uv run python -m benchmarks.gpu_check --steps 50     # quicker
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

from benchmarks.common import RESULTS, ROOT, result_header, write_result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed training steps per model")
    parser.add_argument("--items", type=int, default=25_000, help="bench_training's data scale")
    parser.add_argument("--output-dir", default=str(RESULTS))
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to check (run this on a machine with one)", file=sys.stderr)
        return 2
    header = result_header("gpu_check", argv, threads=None)
    out = Path(args.output_dir)
    stamp = dt.date.today().isoformat()
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "tests/test_gpu.py", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    training_json = out / f"gpu_training_{stamp}.json"
    bench = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.bench_training", "--device", "cuda",
            "--models", "TASRec,SRGNN", "--steps", str(args.steps), "--items", str(args.items),
            "--output", str(training_json),
        ],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    figures = {}
    if bench.returncode == 0:
        training = json.loads(training_json.read_text())
        figures = {
            model: {"samples_per_s": run["samples_per_s"], "peak_gpu_mib": run.get("peak_gpu_mib")}
            for model, runs in training["runs"].items()
            for run in runs[:1]
        }
    result = {
        **header,
        "gpu": torch.cuda.get_device_name(0),
        "tests": {"exit_code": tests.returncode, "summary": tests.stdout.strip().splitlines()[-1:]},
        "training": {"exit_code": bench.returncode, "figures": figures, "json": str(training_json)},
    }
    if bench.returncode != 0:
        result["training"]["error_tail"] = (bench.stdout + bench.stderr)[-3000:]
    if tests.returncode != 0:
        result["tests"]["output_tail"] = tests.stdout[-3000:]
    write_result(result, out / f"gpu_{stamp}.json")
    print(json.dumps({k: result[k] for k in ("gpu", "tests", "training")}, indent=2))
    return 0 if tests.returncode == 0 and bench.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
