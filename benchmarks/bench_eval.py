"""Full-ranking evaluation throughput of TASRec vs RecBole's SRGNN on the same split (issue 9).

Target: TASRec's valid + test sessions per second >= 1.6x SRGNN's (CPU, 2 threads), the streaming temporal
graph included: every repeat builds a fresh model, so the graphs of the valid and test days are built inside
the timed evaluation, as in a user's run. Both models are untrained (the scores' values do not change the
work of a full ranking). Each model is evaluated by this package's ``TASRecTrainer.evaluate`` (RecBole's
full-sort evaluation: ``full_sort_predict`` over every item, then RecBole's metrics).

    uv run python benchmarks/bench_eval.py --repeats 3                     # the recorded run (bench_training's data)
    uv run python benchmarks/bench_eval.py --items 2000 --sessions-per-day 300   # smoke run, seconds

It reuses ``bench_training.py``'s generated data set (same flags, same cache). A run at the required scale
writes ``benchmarks/results/eval_<date>.json``; a smaller one ``runs/bench_results/``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_training import REQUIRED, ROOT, dataset_name, ensure_data, machine_info, ratio, run_identity, write_result

EVAL_TARGET = 1.6  # TASRec sessions/s / SRGNN sessions/s >= this


def evaluate_once(model_name: str, args: argparse.Namespace, run_dir: str) -> dict[str, Any]:
    """Prepare the split, build a fresh model, time its valid and test evaluation."""
    import torch
    from recbole.utils import init_seed

    from recbole_tasrec.config import Config, get_model
    from recbole_tasrec.quick_start import make_dataloaders, prepare_data
    from recbole_tasrec.trainer import TASRecTrainer

    settings = {
        "data_path": str(Path(args.data_dir).resolve()),
        "run_dir": run_dir,
        "checkpoint_dir": run_dir,
        "show_progress": False,
        "state": "WARNING",
        "save_dataset": False,
        "embedding_size": args.embedding_size,
        "eval_batch_size": args.eval_batch_size,
        "seed": args.seed,
        "use_gpu": args.device == "cuda",
    }
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=25_000)
    parser.add_argument("--sessions-per-day", type=int, default=3_400)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default="TASRec,SRGNN")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved (TASRec, SRGNN, TASRec, ...)")
    parser.add_argument("--embedding-size", type=int, default=100)
    parser.add_argument("--eval-batch-size", type=int, default=256, help="sessions per full-ranking batch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--data-dir", default=str(ROOT / "runs" / "bench_data"))
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
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
    verdict: dict[str, Any] = {}
    if "TASRec" in summary and "SRGNN" in summary:
        speed = ratio(summary["TASRec"]["sessions_per_s"], summary["SRGNN"]["sessions_per_s"])
        verdict = {
            "eval_ratio_tasrec_over_srgnn": speed,
            "eval_ratio_per_repeat": [
                ratio(a["sessions_per_s"], b["sessions_per_s"])
                for a, b in zip(runs["TASRec"], runs["SRGNN"], strict=True)
            ],
            "eval_target": f">= {EVAL_TARGET}",
            "eval": "PASS" if speed is not None and speed >= EVAL_TARGET else "FAIL",
        }
    scale_ok = args.items >= 25_000 and args.sessions_per_day * args.days >= REQUIRED["sessions"]
    result = {
        **run_identity("bench_eval", argv),
        "machine": machine_info(args),
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
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
    output = write_result(result, "eval", args.output, scale_ok)
    for model, row in summary.items():
        print(f"{model:<8} {row['sessions_per_s']:>9.1f} sessions/s (best of {row['sessions_per_s_all']})")
    if verdict:
        print(
            f"eval TASRec/SRGNN = {verdict['eval_ratio_tasrec_over_srgnn']} "
            f"(target >= {EVAL_TARGET}): {verdict['eval']}"
        )
    print(f"load average {load_start[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end; written to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
