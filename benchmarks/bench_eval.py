"""Full-ranking evaluation throughput of TASRec vs RecBole's SRGNN on the same split.

Target: TASRec's valid + test sessions per second >= 1.6x SRGNN's (CPU, 2 threads), the streaming temporal
graph included: every repeat builds a fresh model, so the graphs of the valid and test days are built inside
the timed evaluation, as in a user's run. Both models are untrained (the scores' values do not change the
work of a full ranking). Each model is evaluated by this package's ``TASRecTrainer.evaluate`` (RecBole's
full-sort evaluation: ``full_sort_predict`` over every item, then RecBole's metrics).

    uv run python -m benchmarks.bench_eval --repeats 3                     # the recorded run (bench_training's data)
    uv run python -m benchmarks.bench_eval --items 2000 --sessions-per-day 300   # smoke run, seconds

It reuses ``bench_training``'s generated data set (:mod:`benchmarks.bench_data`: same flags, same cache). A run at
the required scale writes ``benchmarks/results/eval_<date>.json``; a smaller one ``runs/bench_results/``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

from benchmarks.bench_data import REQUIRED, add_data_flags, bench_settings, dataset_name, ensure_data
from benchmarks.common import ratio, result_header, result_path, write_result

EVAL_TARGET = 1.6  # TASRec sessions/s / SRGNN sessions/s >= this


def evaluate_once(model_name: str, args: argparse.Namespace, run_dir: str) -> dict[str, Any]:
    """Prepare the split, build a fresh model, time its valid and test evaluation."""
    import torch
    from recbole.utils import init_seed

    from recbole_tasrec.config import Config, get_model
    from recbole_tasrec.quick_start import make_dataloaders, prepare_data
    from recbole_tasrec.trainer import TASRecTrainer

    settings = {**bench_settings(args, run_dir), "eval_batch_size": args.eval_batch_size}
    config = Config(model=model_name, dataset=dataset_name(args), config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    prepared = prepare_data(config)
    _, valid_data, test_data = make_dataloaders(config, prepared)
    model = get_model(model_name)(config, prepared.train).to(config["device"])
    trainer = TASRecTrainer(config, model)
    figures: dict[str, Any] = {"model": model_name, "loadavg_before": [round(x, 2) for x in os.getloadavg()]}
    for split, loader, part in (("valid", valid_data, prepared.valid), ("test", test_data, prepared.test)):
        tick = time.perf_counter()
        result = trainer.evaluate(loader, load_best_model=False, show_progress=False)
        if config["device"].type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - tick
        figures[split] = {
            "sessions": len(part),
            "seconds": round(seconds, 3),
            "sessions_per_s": round(len(part) / seconds, 1),
            "metrics": {k: round(float(v), 4) for k, v in result.items()},
        }
    total = figures["valid"]["seconds"] + figures["test"]["seconds"]
    figures["sessions_per_s"] = round((len(prepared.valid) + len(prepared.test)) / total, 1)
    figures["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return figures


def verdict_of(runs: dict[str, list[dict[str, Any]]], summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """TASRec's best sessions/s over SRGNN's against the target, and the same ratio in each round."""
    if "TASRec" not in summary or "SRGNN" not in summary:
        return {}
    speed = ratio(summary["TASRec"]["sessions_per_s"], summary["SRGNN"]["sessions_per_s"])
    return {
        "eval_ratio_tasrec_over_srgnn": speed,
        "eval_ratio_per_repeat": [
            ratio(a["sessions_per_s"], b["sessions_per_s"]) for a, b in zip(runs["TASRec"], runs["SRGNN"], strict=True)
        ],
        "eval_target": f">= {EVAL_TARGET}",
        "eval": "PASS" if speed is not None and speed >= EVAL_TARGET else "FAIL",
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_flags(parser)
    parser.add_argument("--models", default="TASRec,SRGNN")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved (TASRec, SRGNN, TASRec, ...)")
    parser.add_argument("--embedding-size", type=int, default=100)
    parser.add_argument("--eval-batch-size", type=int, default=256, help="sessions per full-ranking batch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--output", default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    header = result_header("bench_eval", argv, args.threads)
    raw = ensure_data(args)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in models}
    with tempfile.TemporaryDirectory(prefix="bench_eval_") as run_dir:
        for repeat in range(args.repeats):
            for model in models:
                figures = evaluate_once(model, args, run_dir)
                runs[model].append(figures)
                print(f"[{repeat + 1}/{args.repeats}] {model}: {figures['sessions_per_s']:.1f} sessions/s", flush=True)
    summary = {
        m: {
            "sessions_per_s": max(f["sessions_per_s"] for f in figs),
            "sessions_per_s_all": [f["sessions_per_s"] for f in figs],
        }
        for m, figs in runs.items()
    }
    verdict = verdict_of(runs, summary)
    scale_ok = args.items >= 25_000 and args.sessions_per_day * args.days >= REQUIRED["sessions"]
    result = {
        **header,
        "settings": {
            "eval_batch_size": args.eval_batch_size,
            "embedding_size": args.embedding_size,
            "device": args.device,
        },
        "data": raw,
        "summary": summary,
        "verdict": verdict,
        "runs": runs,
    }
    output = write_result(result, result_path("eval", args.output, scale_ok))
    for model, row in summary.items():
        print(f"{model:<8} {row['sessions_per_s']:>9.1f} sessions/s (best of {row['sessions_per_s_all']})")
    if verdict:
        print(f"eval TASRec/SRGNN = {verdict['eval_ratio_tasrec_over_srgnn']} (>= {EVAL_TARGET}): {verdict['eval']}")
    load = (result["loadavg_start"][0], result["loadavg_end"][0])
    print(f"load average {load[0]:.2f} at start, {load[1]:.2f} at end; written to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
