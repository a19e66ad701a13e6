"""A bounded load test of the HTTP service on localhost: latency percentiles and throughput.

The service runs in its own process (``python -m recbole_tasrec.serve http``, 1 torch thread) on an untrained
TASRec of ``--items`` items (random weights are as slow as trained ones) whose temporal graph holds ``--days``
random days. The client sends requests of 1 and of 100 sessions (random lengths 1..10, popular items more
often) over one keep-alive connection, one at a time (latency), then from ``--clients`` connections at once
(throughput). Issue 11's target: one-session requests at p90 < 7 ms and >= 500 requests/s.

    uv run python -m benchmarks.bench_serving [--items 40000 --requests 2000 --output serving.json]

Writes ``benchmarks/results/serving_<date>.json`` at the default 40,000 items, else ``runs/bench_results/``
(``--output``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import ROOT, result_header, result_path, write_result
from recbole_tasrec.harness.random_model import random_recommender
from recbole_tasrec.serve import SessionRecommender
from recbole_tasrec.serve.ranking import Ranker


def random_sessions(rng: np.random.Generator, n_items: int, n: int) -> list[list[str]]:
    """``n`` sessions of 1..10 clicks over ``item1..item{n_items-1}``, popular items (Zipf) more often."""
    lengths = rng.integers(1, 11, n)
    items = np.minimum(rng.zipf(1.2, lengths.sum()), n_items - 1)
    names = np.char.add("item", items.astype(str)).tolist()
    cuts = np.cumsum(lengths)[:-1]
    return [list(chunk) for chunk in np.split(np.array(names, dtype=object), cuts)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_service(model_dir: Path, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "recbole_tasrec.serve", "--threads", "1", "http", "--model", str(model_dir)]
    service = subprocess.Popen([*command, "--port", str(port), "--no-save"], cwd=ROOT)
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


def post(connection: http.client.HTTPConnection, body: bytes) -> float:
    """One POST /recommend; returns its latency in ms (checked: status 200)."""
    start = time.perf_counter()
    connection.request("POST", "/recommend", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    payload = response.read()
    elapsed = 1000 * (time.perf_counter() - start)
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")
    return elapsed


def bodies(rng: np.random.Generator, n_items: int, per_request: int, n: int, k: int) -> list[bytes]:
    return [json.dumps({"sessions": random_sessions(rng, n_items, per_request), "k": k}).encode() for _ in range(n)]


def measure(port: int, payloads: list[bytes], clients: int) -> dict[str, float]:
    """Send ``payloads`` from ``clients`` keep-alive connections at once: latency percentiles and throughput."""
    latencies: list[list[float]] = [[] for _ in range(clients)]

    def worker(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        latencies[index] = [post(connection, body) for body in payloads[index::clients]]
        connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    every = np.concatenate([np.asarray(part) for part in latencies])
    if len(every) != len(payloads):
        raise RuntimeError(f"{len(payloads) - len(every)} requests failed (see the output above)")
    p50, p90, p99 = np.percentile(every, [50, 90, 99])
    return {
        "requests": len(every),
        "clients": clients,
        "p50_ms": round(float(p50), 3),
        "p90_ms": round(float(p90), 3),
        "p99_ms": round(float(p99), 3),
        "requests_per_s": round(len(every) / seconds, 1),
    }


def in_process(recommender: SessionRecommender, rng: np.random.Generator, n: int, k: int) -> dict[str, float]:
    """The same one-session requests without HTTP (torch + ranking only): what the HTTP layer adds is the rest."""
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
    return {
        "requests": n,
        "p50_ms": round(float(p50), 3),
        "p90_ms": round(float(p90), 3),
        "p99_ms": round(float(p99), 3),
    }


def http_phases(port: int, rng: np.random.Generator, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Requests of 1 and of 100 sessions, each sent one at a time and then from ``--clients`` connections."""
    measure(port, bodies(rng, args.items, 1, 200, args.k), 1)  # warm-up
    results = {}
    for per_request, n in ((1, args.requests), (100, args.batch_requests)):
        payloads = bodies(rng, args.items, per_request, n, args.k)
        results[f"{per_request}_session"] = {
            "sequential": measure(port, payloads, 1),
            "concurrent": measure(port, payloads, args.clients),
        }
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=40_000, help="items in the model (default: 40,000)")
    parser.add_argument("--days", type=int, default=5, help="random days in the temporal graph (default: 5)")
    parser.add_argument("--requests", type=int, default=2000, help="one-session requests per phase")
    parser.add_argument("--batch-requests", type=int, default=200, help="100-session requests per phase")
    parser.add_argument("--clients", type=int, default=4, help="connections of the throughput phase")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--output", type=Path, default=None, help="the JSON file (default: see the docstring)")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as scratch:
        recommender = random_recommender(args.items, days=args.days)
        recommender.save(Path(scratch) / "model")
        torch.set_num_threads(1)
        report = {**result_header("bench_serving", argv, threads=1), "items": args.items, "embedding_size": 100}
        report.update(k=args.k, in_process_1_session=in_process(recommender, rng, args.requests, args.k))
        port = free_port()
        service = start_service(Path(scratch) / "model", port)
        try:
            report["results"] = http_phases(port, rng, args)
        finally:
            service.terminate()
            service.wait(timeout=30)
    output = write_result(report, result_path("serving", args.output, args.items >= 40_000))
    print(json.dumps({k: report[k] for k in ("in_process_1_session", "results")}, indent=2))
    print(f"written to {output}")


if __name__ == "__main__":
    main()
