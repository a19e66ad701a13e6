"""Training throughput and peak memory of TASRec vs RecBole's SRGNN (and GRU4Rec), against the speed targets.

The targets: on the same generated data set (>= 20,000 items, >= 100,000
sessions, 30 days), CPU with 2 torch threads, same ``train_batch_size`` and ``embedding_size``, TASRec's
training samples per second >= 1.6x SRGNN's, its peak memory <= 1.0x SRGNN's, and (an aim) its step time
<= 1.5x the floor step: an embedding lookup, one linear, the output layer with softmax cross-entropy and
the same Adam at the same shapes (``step_profile.py``, which also splits TASRec's step by part).

What it does:

1. Generates the synthetic data set once (:mod:`benchmarks.bench_data`) and caches it under ``--data-dir``
   (default ``runs/bench_data/``, git-ignored); a later run with the same scale reuses it.
2. Runs every model in its own Python subprocess (so ``ru_maxrss`` is that model's peak), each through this
   package's pipeline as a user gets it: ``prepare_data`` + ``make_dataloaders`` (TASRec: the day-grouped
   training loader; the others: RecBole's loader) + the model + ``torch.optim.Adam`` with the model's
   configured learning rate and weight decay (fused for TASRec, as ``TASRecTrainer`` builds it), exactly
   the calls RecBole's ``Trainer._train_epoch`` makes (``zero_grad``, ``calculate_loss``, ``backward``,
   ``step``, ``loss.item()``).
3. Times ``--steps`` training steps after ``--warmup`` steps (or one whole epoch with ``--epoch``); a
   step's time includes fetching its batch from the loader (and, for TASRec, building a day's graph when
   the batch starts a new day). Samples/s = samples in the timed steps / their total time.
4. Writes ``benchmarks/results/training_<date>.json`` (machine, load average, data set, per-model figures,
   the TASRec/SRGNN ratios) and prints a table with PASS/FAIL for the two targets.

    uv run python -m benchmarks.bench_training                       # the issue's scale (a few minutes)
    uv run python -m benchmarks.bench_training --items 2000 --sessions-per-day 300 --steps 20   # smoke run

A run below the required scale writes its JSON under ``runs/bench_results/`` unless ``--output`` says
otherwise, so a smoke run never replaces a committed result.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmarks.bench_data import REQUIRED, add_data_flags, bench_settings, data_flags, dataset_name, ensure_data
from benchmarks.common import ROOT, peak_rss_mib, ratio, result_header, result_path, write_result

SPEED_TARGET = 1.6  # TASRec samples/s / SRGNN samples/s >= this
MEMORY_TARGET = 1.0  # TASRec peak RSS / SRGNN peak RSS <= this
FLOOR_TARGET = 1.5  # TASRec ms/step / the floor step's ms (same shapes, same batches) <= this (an aim)


def rss_mib() -> float | None:
    """The current resident set size in MiB (Linux ``/proc``), ``None`` elsewhere."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------------------------------
# the worker: one model, one process
# --------------------------------------------------------------------------------------------------
def build(args: argparse.Namespace, figures: dict[str, Any]) -> tuple[Any, Any, Any, Any, Any]:
    """The data, the loader, the model and its optimiser as a user's run builds them; records their figures.
    Returns ``(prepared, train_data, model, optimizer, device)``."""
    import torch
    from recbole.utils import init_seed

    from recbole_tasrec.config import Config
    from recbole_tasrec.quick_start import build_model, make_dataloaders, prepare_data
    from recbole_tasrec.trainer import adam_options

    settings = {**bench_settings(args, tempfile.mkdtemp(prefix="bench_training_")), "train_batch_size": args.batch_size}
    if args.worker == "GRU4Rec":
        settings["hidden_size"] = args.embedding_size
    start = time.perf_counter()
    config = Config(model=args.worker, dataset=dataset_name(args), config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    figures["rss_after_imports_mib"] = rss_mib()
    prepared = prepare_data(config)
    train_data, _, _ = make_dataloaders(config, prepared)
    figures["prepare_s"] = round(time.perf_counter() - start, 2)
    figures["rss_after_data_mib"] = rss_mib()
    figures["peak_rss_after_data_mib"] = peak_rss_mib()
    dataset = prepared.dataset
    figures["data"] = {
        "items_after_filter": int(dataset.item_num) - 1,  # id 0 is padding
        "sessions_after_filter": int(dataset.user_num) - 1,
        "days": int(dataset.n_days),
        "train_days": int(dataset.n_train_days),
        "train_samples": len(prepared.train),
        "valid_samples": len(prepared.valid),
        "test_samples": len(prepared.test),
    }
    figures["train_loader"] = type(train_data).__name__
    figures["batches_per_epoch"] = len(train_data)

    device = torch.device(config["device"])
    if device.type != args.device:
        raise SystemExit(f"asked for --device {args.device}, but RecBole's config gives {device}")
    model = build_model(config, prepared.train)
    weight_decay = float(config["weight_decay"] or 0.0)
    # as TASRecTrainer builds it: fused for TASRec (its own choice), RecBole's per-tensor Adam for the others
    options = adam_options(model)
    lr = float(config["learning_rate"])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, **options)
    figures["optimizer"] = f"torch.optim.Adam {options or '(per-tensor, as RecBole builds it)'}"
    figures["parameters"] = sum(p.numel() for p in model.parameters())
    figures["learning_rate"] = lr
    figures["weight_decay"] = weight_decay
    figures["rss_after_model_mib"] = rss_mib()
    return prepared, train_data, model, optimizer, device


def timed_steps(
    args: argparse.Namespace, train_data: Any, model: Any, optimizer: Any, device: Any, day_field: str | None
) -> dict[str, Any]:
    """Train ``--warmup`` then ``--steps`` steps (or the rest of an epoch); each timed step's ms, batch fetch ms,
    batch size and (``day_field`` given) day, the last loss and the load before and after."""
    import numpy as np
    import torch

    timed: dict[str, Any] = {"step_ms": [], "fetch_ms": [], "batch_sizes": [], "days": []}
    total = None if args.epoch else args.warmup + args.steps
    model.train()
    timed["load_before"] = os.getloadavg()
    iterator = iter(train_data)
    step = 0
    loss_value = float("nan")
    while total is None or step < total:
        tick = time.perf_counter()
        try:
            interaction = next(iterator).to(device)
        except StopIteration:
            if total is None:
                break
            iterator = iter(train_data)  # a small data set: carry on into the next epoch
            continue
        fetched = time.perf_counter()
        optimizer.zero_grad()
        loss = model.calculate_loss(interaction)
        loss_value = loss.item()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        done = time.perf_counter()
        if not np.isfinite(loss_value):
            raise RuntimeError(f"{args.worker}: loss is {loss_value} at step {step}")
        if step >= args.warmup:
            timed["step_ms"].append(1000 * (done - tick))
            timed["fetch_ms"].append(1000 * (fetched - tick))
            timed["batch_sizes"].append(len(interaction))
            if day_field is not None and day_field in interaction:
                timed["days"].append(int(interaction[day_field][0]))
        step += 1
    timed["load_after"] = os.getloadavg()
    timed["final_loss"] = loss_value
    if not timed["step_ms"]:
        raise RuntimeError(f"{args.worker}: no timed step (the epoch is shorter than --warmup)")
    return timed


def step_figures(timed: dict[str, Any]) -> dict[str, Any]:
    """Speed, step-time percentiles and memory from :func:`timed_steps`' record."""
    import torch

    step_ms, sizes, days = timed["step_ms"], timed["batch_sizes"], timed["days"]
    seconds = sum(step_ms) / 1000
    ordered = sorted(step_ms)
    return {
        "timed_steps": len(step_ms),
        "timed_samples": sum(sizes),
        "mean_batch": round(sum(sizes) / len(sizes), 1),
        "timed_s": round(seconds, 3),
        "samples_per_s": round(sum(sizes) / seconds, 1),
        # less sensitive to other processes' bursts on a shared machine: mean batch / median step
        "samples_per_s_from_median_step": round(statistics.fmean(sizes) / statistics.median(step_ms) * 1000, 1),
        "ms_per_step_mean": round(statistics.fmean(step_ms), 2),
        "ms_per_step_median": round(statistics.median(step_ms), 2),
        "ms_per_step_p90": round(ordered[int(0.9 * (len(ordered) - 1))], 2),
        "ms_per_step_max": round(ordered[-1], 2),
        "ms_fetch_batch_mean": round(statistics.fmean(timed["fetch_ms"]), 2),
        "day_switches_in_timed_steps": sum(a != b for a, b in zip(days, days[1:], strict=False)) if days else None,
        "final_loss": round(timed["final_loss"], 4),
        "rss_end_mib": rss_mib(),
        "peak_rss_mib": peak_rss_mib(),
        "loadavg_before": [round(x, 2) for x in timed["load_before"]],
        "loadavg_after": [round(x, 2) for x in timed["load_after"]],
        "torch_threads": torch.get_num_threads(),
    }


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One model (``--worker``): build it, time its steps, then (TASRec) profile its step and time the floor."""
    import torch

    torch.set_num_threads(args.threads)
    figures: dict[str, Any] = {"model": args.worker}
    prepared, train_data, model, optimizer, device = build(args, figures)
    # day-grouped batches: count how often a batch starts a new day (each start builds that day's graph)
    grouped = getattr(model, "day_grouped_batches", False)
    day_field = getattr(prepared.dataset, "day_field", None) if grouped else None
    figures.update(step_figures(timed_steps(args, train_data, model, optimizer, device, day_field)))
    if device.type == "cuda":
        figures["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    if args.worker == "TASRec" and args.profile_steps:  # after the figures above, so it changes none of them
        figures["profile"], figures["floor"] = profile_and_floor(args, model, optimizer, train_data, device)
    return figures


def profile_and_floor(args: argparse.Namespace, model: Any, optimizer: Any, train_data: Any, device: Any):
    """The profile of TASRec's step by part, and the floor step at the same shapes on the same batches."""
    from benchmarks.step_profile import endless, floor_steps, profile_tasrec
    from recbole_tasrec.trainer import adam_options

    batches = endless(train_data)
    profile = profile_tasrec(model, optimizer, batches, args.profile_steps, device)
    fields = (model.ITEM_SEQ, model.POS_ITEM_ID)
    n_items, d = model.item_embedding.weight.shape
    floor = floor_steps(n_items, d, adam_options(model), batches, fields, args.profile_steps, args.warmup, device)
    return profile, floor


# --------------------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------------------
def run_worker(args: argparse.Namespace, model: str) -> dict[str, Any]:
    """One model in a fresh interpreter; its figures come back as the last line of stdout."""
    command = [
        sys.executable, "-m", "benchmarks.bench_training", "--worker", model, *data_flags(args),
        "--threads", str(args.threads), "--batch-size", str(args.batch_size),
        "--embedding-size", str(args.embedding_size), "--steps", str(args.steps), "--warmup", str(args.warmup),
        "--profile-steps", str(args.profile_steps), "--device", args.device,
    ]  # fmt: skip
    if args.epoch:
        command.append("--epoch")
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(args.threads)  # numpy/scipy's BLAS too, not only torch's intra-op pool
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"the {model} worker failed (exit {result.returncode})")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_rounds(args: argparse.Namespace, models: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Every model ``--repeats`` times, interleaved (TASRec, SRGNN, ..., TASRec, ...): each model's figures."""
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in models}
    for repeat in range(args.repeats):
        for model in models:
            print(f"[{repeat + 1}/{args.repeats}] {model} ...", flush=True)
            figures = run_worker(args, model)
            runs[model].append(figures)
            print(
                f"    {figures['samples_per_s']:>8.1f} samples/s, {figures['ms_per_step_mean']:.1f} ms/step, "
                f"peak RSS {figures['peak_rss_mib']:.0f} MiB (load {figures['loadavg_before'][0]:.2f})",
                flush=True,
            )
    return runs


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per model: the best repeat for speed (least disturbed by other load), the largest peak for memory."""
    summary: dict[str, dict[str, Any]] = {}
    for model, figs in runs.items():
        best = max(figs, key=lambda f: f["samples_per_s"])
        summary[model] = {
            "samples_per_s": best["samples_per_s"],
            "samples_per_s_all": [f["samples_per_s"] for f in figs],
            "samples_per_s_from_median_step_all": [f["samples_per_s_from_median_step"] for f in figs],
            "ms_per_step_mean": best["ms_per_step_mean"],
            "ms_per_step_median": best["ms_per_step_median"],
            "peak_rss_mib": round(max(f["peak_rss_mib"] for f in figs), 1),
            "peak_rss_after_data_mib": round(max(f["peak_rss_after_data_mib"] for f in figs), 1),
            "rss_after_data_mib": round(max(f["rss_after_data_mib"] for f in figs), 1),
            "rss_end_mib": round(max(f["rss_end_mib"] or 0 for f in figs), 1),
        }
    if "TASRec" in runs and "profile" in runs["TASRec"][0]:
        best = max(runs["TASRec"], key=lambda f: f["samples_per_s"])
        summary["TASRec"]["profile_ms_median"] = best["profile"]["ms_median"]
        summary["TASRec"]["profile_all_repeats"] = [f["profile"]["ms_median"] for f in runs["TASRec"]]
    return summary


def floor_summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
    """The fastest floor step over TASRec's repeats (``None`` without a profiled TASRec)."""
    if "TASRec" not in runs or "floor" not in runs["TASRec"][0]:
        return None
    floors = [f["floor"] for f in runs["TASRec"]]
    floor = min(floors, key=lambda f: f["ms_per_step_mean"])
    return {
        "ms_per_step_mean": floor["ms_per_step_mean"],
        "ms_per_step_mean_all": [f["ms_per_step_mean"] for f in floors],
        "ms_per_step_median": floor["ms_per_step_median"],
        "optimizer": floor["optimizer"],
    }


def verdicts(runs: dict, summary: dict, floor: dict | None, scale_ok: bool) -> dict[str, Any]:
    """The targets against the figures: TASRec's step over the floor, its speed and memory over SRGNN's."""
    verdict: dict[str, Any] = {"scale_meets_requirement": scale_ok}
    if floor:
        over = ratio(summary["TASRec"]["ms_per_step_mean"], floor["ms_per_step_mean"])
        verdict.update(
            {
                "tasrec_step_over_floor": over,
                "tasrec_step_over_floor_from_medians": ratio(
                    summary["TASRec"]["ms_per_step_median"], floor["ms_per_step_median"]
                ),
                "floor_aim": f"<= {FLOOR_TARGET}",
                "floor": "MET" if over is not None and over <= FLOOR_TARGET else "MISSED",
            }
        )
    if "TASRec" in summary and "SRGNN" in summary:
        t, s = summary["TASRec"], summary["SRGNN"]
        speed = ratio(t["samples_per_s"], s["samples_per_s"])
        memory = ratio(t["peak_rss_mib"], s["peak_rss_mib"])
        verdict.update(
            {
                "speed_ratio_tasrec_over_srgnn": speed,
                # the same ratio from each repeat (TASRec and SRGNN of one round ran back to back)
                "speed_ratio_per_repeat": [
                    ratio(a["samples_per_s"], b["samples_per_s"])
                    for a, b in zip(runs["TASRec"], runs["SRGNN"], strict=True)
                ],
                "speed_ratio_from_median_steps": ratio(
                    max(t["samples_per_s_from_median_step_all"]), max(s["samples_per_s_from_median_step_all"])
                ),
                "speed_target": f">= {SPEED_TARGET}",
                "speed": "PASS" if speed is not None and speed >= SPEED_TARGET else "FAIL",
                "memory_ratio_tasrec_over_srgnn": memory,
                "memory_target": f"<= {MEMORY_TARGET}",
                "memory": "PASS" if memory is not None and memory <= MEMORY_TARGET else "FAIL",
                "model_memory_above_data_mib": {
                    m: round(summary[m]["peak_rss_mib"] - summary[m]["rss_after_data_mib"], 1)
                    for m in ("TASRec", "SRGNN")
                },
            }
        )
    return verdict


def print_report(result: dict[str, Any], output: Any) -> None:
    raw, p = result["data"]["raw"], result["data"]["processed"]
    summary, verdict, floor = result["summary"], result["verdict"], result["floor"]
    print()
    print(
        f"data: {raw['clicks']:,} clicks, {raw['sessions']:,} sessions, {raw['items_clicked']:,} items clicked "
        f"over {raw['calendar_days']} days; after the filters {p['sessions_after_filter']:,} sessions, "
        f"{p['items_after_filter']:,} items; {p['train_samples']:,} training samples"
    )
    print(f"{'model':<9} {'samples/s':>10} {'ms/step':>8} {'RSS after data':>15} {'peak RSS':>9}  all runs (samples/s)")
    for model, row in summary.items():
        print(
            f"{model:<9} {row['samples_per_s']:>10.1f} {row['ms_per_step_mean']:>8.1f} "
            f"{row['rss_after_data_mib']:>11.0f} MiB {row['peak_rss_mib']:>5.0f} MiB  {row['samples_per_s_all']}"
        )
    if not verdict["scale_meets_requirement"]:
        print(f"NOTE: below the required scale {REQUIRED}: the verdicts below do not answer the speed targets")
    if floor:
        profile = summary["TASRec"]["profile_ms_median"]
        print("TASRec step by part (median ms): " + ", ".join(f"{k} {v:.1f}" for k, v in profile.items()))
        print(
            f"floor step {floor['ms_per_step_mean']:.1f} ms; TASRec/floor = "
            f"{verdict['tasrec_step_over_floor']} (aim <= {FLOOR_TARGET}): {verdict['floor']}"
        )
    if "speed" in verdict:
        print(
            f"speed  TASRec/SRGNN = {verdict['speed_ratio_tasrec_over_srgnn']} (>= {SPEED_TARGET}): {verdict['speed']}"
        )
        print(
            f"memory TASRec/SRGNN = {verdict['memory_ratio_tasrec_over_srgnn']} (<= {MEMORY_TARGET}): "
            f"{verdict['memory']}"
        )
    print(f"load average at end: {result['loadavg_end'][0]:.2f}; written to {output}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add_data_flags(parser)
    parser.add_argument(
        "--models", default="TASRec,SRGNN,GRU4Rec", help="comma-separated; the ratios need TASRec and SRGNN"
    )
    parser.add_argument("--steps", type=int, default=200, help="timed training steps per model")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    parser.add_argument("--epoch", action="store_true", help="time the rest of one whole epoch instead of --steps")
    parser.add_argument("--repeats", type=int, default=1, help="run every model this many times (interleaved)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--embedding-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--profile-steps", type=int, default=60, help="TASRec's steps profiled by part, and floor steps (0: none)"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="RecBole's use_gpu")
    parser.add_argument("--output", default=None, help="the JSON file (default: see the module docstring)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    header = result_header("bench_training", argv, args.threads)
    print("load average at start: " + " ".join(f"{x:.2f}" for x in header["loadavg_start"]))
    raw = ensure_data(args)
    runs = run_rounds(args, [m.strip() for m in args.models.split(",") if m.strip()])
    processed = next(iter(runs.values()))[0]["data"]
    scale_ok = (
        processed["items_after_filter"] >= REQUIRED["items"]
        and processed["sessions_after_filter"] >= REQUIRED["sessions"]
        and raw["calendar_days"] >= REQUIRED["days"]
    )
    summary, floor = summarise(runs), floor_summary(runs)
    result = {
        **header,
        "settings": {
            "train_batch_size": args.batch_size,
            "embedding_size": args.embedding_size,
            "threads": args.threads,
            "warmup_steps": args.warmup,
            "timed": "rest of one epoch" if args.epoch else f"{args.steps} steps",
            "repeats": args.repeats,
            "optimizer": "torch.optim.Adam (the model's learning_rate and weight_decay); fused for TASRec as "
            "TASRecTrainer builds it, per-tensor for the others as RecBole builds it",
            "device": args.device,
            "profile_steps": args.profile_steps,
        },
        "data": {"raw": raw, "processed": processed},
        "summary": summary,
        "floor": floor,
        "verdict": verdicts(runs, summary, floor, scale_ok),
        "runs": runs,
    }
    output = write_result(result, result_path("training", args.output, scale_ok))
    print_report(result, output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
