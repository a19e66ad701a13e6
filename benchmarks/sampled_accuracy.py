"""Accuracy of the sampled softmax against the full one: TASRec's test Recall@20 with ``loss_type: CE`` (Eq. 9) and
``loss_type: sampled`` on the same data set, seeds and settings (short runs: the comparison, not the best figure).

Target (issue "shop scale"): the sampled mean within 3 % (relative) of the full softmax's mean over 3 seeds.

    uv run python -m benchmarks.sampled_accuracy [--dataset sample --seeds 1,2,3 --epochs 5 --output FILE]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

from benchmarks.common import result_header, result_path, write_result

TARGET_RELATIVE_GAP = 0.03


def one_run(dataset: str, loss_type: str, seed: int, args: argparse.Namespace, run_dir: str) -> dict[str, Any]:
    from recbole_tasrec import run_recbole_tasrec

    settings = {
        "seed": seed,
        "epochs": args.epochs,
        "loss_type": loss_type,
        "num_negatives": args.num_negatives,
        "show_progress": False,
        "state": "WARNING",
        "run_dir": run_dir,
    }
    tick = time.perf_counter()
    result = run_recbole_tasrec("TASRec", dataset, config_dict=settings, saved=False)
    return {
        "loss_type": loss_type,
        "seed": seed,
        "seconds": round(time.perf_counter() - tick, 1),
        "test_recall@20": result["test_result"]["recall@20"],
        "test_mrr@20": result["test_result"]["mrr@20"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sample")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--num-negatives", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=None, help="default: benchmarks/results/sampled_accuracy_<date>.json")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    result: dict[str, Any] = result_header("sampled_accuracy", argv, args.threads)
    result["settings"] = vars(args).copy()
    runs = []
    with tempfile.TemporaryDirectory(prefix="sampled_accuracy_") as run_dir:
        for seed in seeds:
            for loss_type in ("CE", "sampled"):
                runs.append(one_run(args.dataset, loss_type, seed, args, run_dir))
                print(runs[-1], flush=True)
    result["runs"] = runs
    recall = {loss: [r["test_recall@20"] for r in runs if r["loss_type"] == loss] for loss in ("CE", "sampled")}
    means = {loss: statistics.mean(values) for loss, values in recall.items()}
    spread = {loss: statistics.pstdev(values) for loss, values in recall.items()}
    gap = (means["sampled"] - means["CE"]) / means["CE"]
    result["summary"] = {
        "recall@20_mean": {k: round(v, 4) for k, v in means.items()},
        "recall@20_std": {k: round(v, 4) for k, v in spread.items()},
        "relative_gap": round(gap, 4),
        "within_3_percent": bool(abs(gap) <= TARGET_RELATIVE_GAP or gap > 0),
        "seconds_mean": {
            loss: round(statistics.mean(r["seconds"] for r in runs if r["loss_type"] == loss), 1)
            for loss in ("CE", "sampled")
        },
    }
    path = write_result(result, result_path(f"sampled_accuracy_{args.dataset}", args.output, True))
    print(result["summary"], f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
