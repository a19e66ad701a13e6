"""A bounded load test of the HTTP service on localhost, for a TASRec and a STAN index: latency and throughput.

Each model's service runs in its own process (``python -m recbole_tasrec.serve http``, 1 torch thread, the
options this script does not know passed on: e.g. ``--workers 2``); the load generator runs in another
(:mod:`benchmarks.load_client`, raw HTTP over keep-alive connections) and its CPU time is recorded with the
service's. The models: an untrained TASRec of ``--items`` items (random weights are as slow as trained ones)
whose temporal graph holds ``--days`` random days, and a STAN index of ``--sessions`` random sessions over the
same items (:func:`~recbole_tasrec.harness.random_model.random_knn_recommender`: a real log's item popularity).
Requests hold one session of 1..10 clicks. Phases of ``--seconds``: one connection one request at a time
(latency), ``--clients`` connections as fast as answered (capacity), and the target: an open loop of ``--rate``
requests/s over ``--connections`` connections, each latency counted from when the request was due.
The target: 1,000 requests/s at p90 < 7 ms on 2 cores.

    uv run python -m benchmarks.bench_serving [--models TASRec,STAN --rate 1000 --step NAME --workers 2]

Writes ``benchmarks/results/serving_<date>[_<step>].json`` at the default sizes, else ``runs/bench_results/``
(``--output``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from benchmarks.common import ROOT, result_header, result_path, write_result
from recbole_tasrec.harness.random_model import popular_items, random_knn_recommender, random_recommender
from recbole_tasrec.serve.ranking import Ranker
from recbole_tasrec.serve.served import ServedModel


def random_sessions(rng: np.random.Generator, n_items: int, n: int) -> list[list[str]]:
    """``n`` sessions of 1..10 clicks over ``item1..item{n_items-1}``, popular items more often (as a real log)."""
    lengths = rng.integers(1, 11, n)
    items = popular_items(rng, n_items, int(lengths.sum()))
    names = np.char.add("item", items.astype(str)).tolist()
    cuts = np.cumsum(lengths)[:-1]
    return [list(chunk) for chunk in np.split(np.array(names, dtype=object), cuts)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_service(model_dir: Path, port: int, options: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "recbole_tasrec.serve", "--threads", "1", "http", "--model", str(model_dir)]
    service = subprocess.Popen([*command, "--port", str(port), "--no-save", *options], cwd=ROOT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return service
        except OSError:
            if service.poll() is not None:
                raise RuntimeError(f"the service exited with status {service.returncode}") from None
            time.sleep(0.5)
    service.terminate()
    raise RuntimeError("the service did not start within 180 s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and of its children alive now (the service's workers)."""
    total, ticks = 0.0, os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(cpu_seconds(int(child)) for child in children)


def memory_mb(pid: int) -> dict[str, float]:
    """Resident and proportional (shared pages split among their users) memory of the service's processes, MB:
    forked workers share the model's pages, so their PSS sum stays near one process's RSS."""
    pids, total = [pid], {"rss_mb": 0.0, "pss_mb": 0.0}
    with contextlib.suppress(OSError):
        pids += [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for one in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{one}/smaps_rollup").read_text().splitlines():
                name, _, value = line.partition(":")
                if name in ("Rss", "Pss"):
                    total[f"{name.lower()}_mb"] += int(value.split()[0]) / 1024
    return {"processes": len(pids), **{key: round(value, 1) for key, value in total.items()}}


def bodies(rng: np.random.Generator, n_items: int, per_request: int, n: int, k: int) -> list[bytes]:
    return [json.dumps({"sessions": random_sessions(rng, n_items, per_request), "k": k}).encode() for _ in range(n)]


def load(port: int, bodies_file: Path, rate: float, connections: int, seconds: float, service: int) -> dict:
    """One run of the load generator in its own process (:mod:`benchmarks.load_client`), with the service's CPU
    time over the run (``service_cpu_share``: cores the service used, on average)."""
    command = [sys.executable, "-m", "benchmarks.load_client", "--port", str(port), "--bodies", str(bodies_file)]
    command += ["--rate", str(rate), "--connections", str(connections), "--seconds", str(seconds)]
    before, start = cpu_seconds(service), time.perf_counter()
    output = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    result["service_cpu_share"] = round((cpu_seconds(service) - before) / (time.perf_counter() - start), 3)
    return result


def in_process(recommender: ServedModel, rng: np.random.Generator, n: int, k: int) -> dict[str, float]:
    """The same one-session requests without HTTP (scoring + ranking only): what the HTTP layer adds is the rest."""
    ranker = Ranker(recommender)
    requests = [random_sessions(rng, len(ranker.tokens), 1) for _ in range(n + 50)]
    for sessions in requests[:50]:
        ranker.rank(sessions, k)
    latencies = []
    for sessions in requests[50:]:
        start = time.perf_counter()
        ranker.rank(sessions, k)
        latencies.append(1000 * (time.perf_counter() - start))
    p50, p90, p99 = np.percentile(latencies, [50, 90, 99])
    return {"requests": n, "p50_ms": round(float(p50), 3), "p90_ms": round(float(p90), 3), "p99_ms": round(p99, 3)}


def http_phases(port: int, service: int, bodies_file: Path, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """One-session requests: one connection one at a time, ``--clients`` connections as fast as answered, and
    the open loop at ``--rate`` (the target)."""
    load(port, bodies_file, 0, args.clients, 1.0, service)  # warm-up
    return {
        "sequential": load(port, bodies_file, 0, 1, args.seconds, service),
        "closed_loop": load(port, bodies_file, 0, args.clients, args.seconds, service),
        "open_loop": load(port, bodies_file, args.rate, args.connections, args.seconds, service),
        "memory": memory_mb(service),
    }


def build(model: str, args: argparse.Namespace) -> ServedModel:
    if model == "TASRec":
        return random_recommender(args.items, days=args.days)
    return random_knn_recommender(args.items, args.sessions, model=model)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="TASRec,STAN", help="comma-separated: TASRec, STAN, VSKNN, SKNN")
    parser.add_argument("--items", type=int, default=40_000, help="items in each model (default: 40,000)")
    parser.add_argument("--sessions", type=int, default=200_000, help="sessions in a kNN index (default: 200,000)")
    parser.add_argument("--days", type=int, default=5, help="random days in TASRec's graph (default: 5)")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s of the open loop (default: 1000)")
    parser.add_argument("--connections", type=int, default=32, help="connections of the open loop (default: 32)")
    parser.add_argument("--clients", type=int, default=4, help="connections of the closed loop (default: 4)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase (default: 5)")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--step", default=None, help="a name for this configuration, added to the file name")
    parser.add_argument("--output", type=Path, default=None, help="the JSON file (default: see the docstring)")
    args, options = parser.parse_known_args(argv)  # the rest goes to the service: e.g. --workers 2

    rng = np.random.default_rng(1)
    report = {**result_header("bench_serving", argv, threads=1), "service_options": options, "k": args.k}
    report.update(items=args.items, kNN_sessions=args.sessions, rate=args.rate, seconds=args.seconds, models={})
    with tempfile.TemporaryDirectory() as scratch:
        bodies_file = Path(scratch) / "bodies.jsonl"
        bodies_file.write_bytes(b"\n".join(bodies(rng, args.items, 1, 5000, args.k)))
        for model in args.models.split(","):
            recommender = build(model, args)
            recommender.save(Path(scratch) / model)
            torch.set_num_threads(1)
            threadpool_limits(1)  # NumPy's BLAS too, as the service's --threads 1
            figures = {"in_process": in_process(recommender, rng, 1000, args.k)}
            del recommender
            port = free_port()
            service = start_service(Path(scratch) / model, port, options)
            try:
                figures["http"] = http_phases(port, service.pid, bodies_file, args)
            finally:
                service.terminate()
                service.wait(timeout=30)
            report["models"][model] = figures
            print(json.dumps({model: figures}, indent=1), flush=True)
    full = args.items >= 40_000 and args.sessions >= 200_000
    path = result_path("serving", args.output, full)
    if args.step and not args.output:
        path = path.with_name(f"{path.stem}_{args.step}{path.suffix}")
    print(f"written to {write_result(report, path)}")


if __name__ == "__main__":
    main()
