"""Training throughput of TASRec over 1, 2, ... processes: samples/s of one training epoch.

Every process count runs the real distributed path: ``distributed.launch`` spawns the processes (Gloo on
CPUs, NCCL on GPUs), each builds the data and the model, and times one epoch of
``distributed_trainer(TASRecTrainer)._train_epoch`` between two barriers (day batches split across the ranks,
DDP gradient all-reduce). One process runs the plain trainer. Samples/s = training samples / epoch time.
On CPUs each process gets ``cpu_count // nproc`` torch threads (``--threads``), so the cores are shared, not
oversubscribed: on a 2-core machine expect no speed-up from 2 processes (the same cores, plus the all-reduce).

    uv run python -m benchmarks.bench_distributed                     # 1 and 2 processes, the demo set
    uv run python -m benchmarks.bench_distributed --nproc 1 2 4 --dataset sample --embedding-size 100
    # a smaller generated set (what the recorded run used, on a loaded 2-core machine)
    uv run python -m recbole_tasrec.data.synthetic --output-dir runs/bench_data --name ddp_small \
        --n-items 800 --n-days 14 --sessions-per-day 150
    uv run python -m benchmarks.bench_distributed --data-path runs/bench_data --dataset ddp_small --embedding-size 32

Writes ``benchmarks/results/distributed_<date>.json`` (``--output``): machine, load average, settings, and
per process count the epoch time and samples/s.
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from benchmarks.common import ROOT, result_header, result_path, write_result
from recbole_tasrec import distributed
from recbole_tasrec.config import Config, get_model
from recbole_tasrec.distributed.trainer import distributed_trainer
from recbole_tasrec.quick_start import make_dataloaders, prepare_data
from recbole_tasrec.trainer import TASRecTrainer


def time_epoch(config_dict: dict[str, Any], model: str, dataset: str, threads: int) -> dict[str, Any]:
    """One timed training epoch on this process (one of ``nproc`` or the only one)."""
    torch.set_num_threads(threads)
    config = Config(model, dataset, config_dict=config_dict)
    prepared = prepare_data(config)
    train, _, _ = make_dataloaders(config, prepared)
    net = get_model(config["model"])(config, prepared.train).to(config["device"])
    several = not config["single_spec"]
    trainer = (distributed_trainer(TASRecTrainer) if several else TASRecTrainer)(config, net)
    if several:
        dist.barrier()
    start = time.perf_counter()
    trainer._train_epoch(train, 0)
    if several:
        dist.barrier()
    seconds = time.perf_counter() - start
    samples = len(prepared.train)
    steps = len(train)
    return {
        "seconds": seconds,
        "samples": samples,
        "samples_per_s": samples / seconds,
        "steps": steps,
        "threads": threads,
    }


def measure(nproc: int, args: argparse.Namespace) -> dict[str, Any]:
    settings = {
        "epochs": 1,
        "embedding_size": args.embedding_size,
        "train_batch_size": args.batch_size,
        "state": "WARNING",
        "show_progress": False,
        "run_dir": str(ROOT / "runs" / "bench_distributed"),
    }
    if args.data_path is not None:
        settings["data_path"] = str(args.data_path.resolve())
    threads = args.threads or max(1, (os.cpu_count() or 1) // nproc)
    kwargs = {"config_dict": settings, "model": args.model, "dataset": args.dataset, "threads": threads}
    if nproc == 1:
        return time_epoch(**kwargs)
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    launch = {"nproc": nproc, "world_size": nproc, "ip": "localhost", "port": port, "offset": 0}
    return distributed.launch(launch, time_epoch, **kwargs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model", default="TASRec")
    parser.add_argument("--dataset", default="sample")
    parser.add_argument("--data-path", type=Path, default=None, help="RecBole data_path (default: atomic_data)")
    parser.add_argument("--embedding-size", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128, help="the global batch (split across processes)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process (cpu_count // nproc)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    record = {
        **result_header("bench_distributed", argv, args.threads),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "output"},
        "runs": {},
    }
    for nproc in args.nproc:
        record["runs"][str(nproc)] = result = measure(nproc, args)
        print(
            f"{nproc} process(es): {result['samples_per_s']:.0f} samples/s ({result['seconds']:.1f} s, "
            f"{result['steps']} steps per rank)",
            flush=True,
        )
    print(f"wrote {write_result(record, result_path('distributed', args.output, full_scale=True))}")


if __name__ == "__main__":
    main()
