"""The cost of ``continual: daily``'s test phase against one training epoch over the test days' samples.

On one trained model (demo set by default, TASRec, ``--epochs`` of training first), each timed from the same best
checkpoint:

* ``off``: RecBole's evaluation of the whole test split (the paper's protocol);
* ``epoch_over_valid`` / ``epoch_over_test``: one training epoch over the validation / the test samples, in one
  loader each (the trainer's ``_train_epoch``);
* ``refit`` / ``daily``: the whole continual test phase (:mod:`recbole_tasrec.continual`).

``daily - refit`` is the per-day training alone; it should cost about ``epoch_over_test`` (the same samples, one
loader per day), and ``daily`` about ``off + epoch_over_valid + epoch_over_test``. Each figure is wall-clock and
CPU seconds; the ratios use CPU seconds (run with ``--threads 1`` so that they are the work done).

    uv run python -m benchmarks.bench_continual --epochs 1 --threads 1   # the recorded run (demo set)
    uv run python -m benchmarks.bench_continual --epochs 1 --embedding-size 16 --output /tmp/c.json   # smoke run

Writes ``benchmarks/results/continual_<date>.json`` (``--output`` to choose).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

from benchmarks.common import ratio, result_header, result_path, write_result


def timed(work: Any) -> tuple[dict[str, float], Any]:
    """Wall-clock and CPU seconds of ``work()``: on a shared machine the CPU time is the steadier figure (other
    people's load, or a paused machine, stretch the wall clock only)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = work()
    return {"wall": round(time.perf_counter() - wall, 3), "cpu": round(time.process_time() - cpu, 3)}, out


def measure(args: argparse.Namespace, run_dir: str) -> dict[str, Any]:
    from recbole_tasrec import continual
    from recbole_tasrec.config import Config
    from recbole_tasrec.quick_start import build_model, make_dataloaders, prepare_data
    from recbole_tasrec.trainer import ScheduledTrainer

    settings = {
        "run_dir": run_dir,
        "show_progress": False,
        "state": "WARNING",
        "save_dataset": False,
        "epochs": args.epochs,
        "embedding_size": args.embedding_size,
        "seed": args.seed,
    }
    config = Config(model=args.model, dataset=args.dataset, config_dict=settings)
    prepared = prepare_data(config)
    train, valid, test = make_dataloaders(config, prepared)
    trainer = ScheduledTrainer(config, build_model(config, prepared.train))
    fit_s, _ = timed(lambda: trainer.fit_with_callback(train, valid, saved=True))

    def from_best(work: Any) -> Any:
        tester = continual.ContinualTester(trainer, prepared, continual.ContinualSettings("daily", 1, None))
        tester.start_from_best(saved=True)
        return work(tester)

    figures: dict[str, Any] = {"fit_s": fit_s, "epochs": args.epochs}
    figures["off_s"], off = from_best(lambda _: timed(lambda: trainer.evaluate(test, load_best_model=False)))
    figures["off_recall@20"] = round(float(off["recall@20"]), 4)
    for split in ("valid", "test"):
        part = getattr(prepared, split)
        figures[f"epoch_over_{split}_s"] = from_best(
            lambda tester, part=part: timed(lambda: trainer._train_epoch(tester.loader(part, training=True), 0))[0]
        )
    for mode in ("refit", "daily"):
        tester = continual.ContinualTester(trainer, prepared, continual.ContinualSettings(mode, 1, None))
        figures[f"{mode}_s"], phase = timed(lambda tester=tester: tester.run(saved=True))
        figures[f"{mode}_recall@20"] = round(phase.test_result["recall@20"], 4)
    figures["samples"] = {"train": len(prepared.train), "valid": len(prepared.valid), "test": len(prepared.test)}
    figures["test_days"] = len(phase.day_results)
    cpu = {key.removesuffix("_s"): value["cpu"] for key, value in figures.items() if key.endswith("_s")}
    figures["cpu_daily_training_over_epoch_over_test"] = ratio(cpu["daily"] - cpu["refit"], cpu["epoch_over_test"])
    expected = cpu["off"] + cpu["epoch_over_valid"] + cpu["epoch_over_test"]
    figures["cpu_daily_over_off_plus_two_epochs"] = ratio(cpu["daily"], expected)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="TASRec")
    parser.add_argument("--dataset", default="sample")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--embedding-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    result: dict[str, Any] = result_header("bench_continual", argv, args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_continual_") as run_dir:
        result[args.model] = measure(args, run_dir)
    path = write_result(result, result_path("continual", args.output, full_scale=True))
    print(result[args.model])
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
