"""A bounded load test of the HTTP service on localhost: latency percentiles and throughput.

The service runs in its own process (``python -m recbole_tasrec.serve http``, 1 torch thread) on an untrained
TASRec of ``--items`` items (random weights are as slow as trained ones) whose temporal graph holds ``--days``
random days. The client sends requests of 1 and of 100 sessions (random lengths 1..10, popular items more
often) over one keep-alive connection, one at a time (latency), then from ``--clients`` connections at once
(throughput). Issue 11's target: one-session requests at p90 < 7 ms and >= 500 requests/s.

    uv run python benchmarks/bench_serving.py [--items 40000 --requests 2000 --output results/serving.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from recbole_tasrec.config import Config
from recbole_tasrec.data.atomic import write_atomic_text
from recbole_tasrec.data.clicks import transition_pairs
from recbole_tasrec.data.temporal_graph import TemporalGraph
from recbole_tasrec.serve import SessionRecommender
from recbole_tasrec.serve.ranking import Ranker

ROOT = Path(__file__).resolve().parents[1]


def random_sessions(rng: np.random.Generator, n_items: int, n: int) -> list[list[str]]:
    """``n`` sessions of 1..10 clicks over ``item1..item{n_items-1}``, popular items (Zipf) more often."""
    lengths = rng.integers(1, 11, n)
    items = np.minimum(rng.zipf(1.2, lengths.sum()), n_items - 1)
    names = np.char.add("item", items.astype(str)).tolist()
    cuts = np.cumsum(lengths)[:-1]
    return [list(chunk) for chunk in np.split(np.array(names, dtype=object), cuts)]


def random_recommender(n_items: int, days: int = 0, sessions_per_day: int = 5000, seed: int = 0, **settings):
    """An untrained TASRec over items ``item1..`` whose graph folded in ``days`` random days (for load tests)."""
    config = Config("TASRec", "sample", config_dict={"state": "WARNING", **settings})
    tokens = np.array(["[PAD]", *(f"item{i}" for i in range(1, n_items))])
    graph = TemporalGraph(n_items, float(config["decay"]), config["edge_weight"], float(config["prune_below"]))
    rng = np.random.default_rng(seed)
    for _ in range(days):
        lengths = rng.integers(2, 11, sessions_per_day)
        items = rng.integers(1, n_items, lengths.sum())
        graph.advance(*transition_pairs(np.repeat(np.arange(sessions_per_day), lengths), items))
    return SessionRecommender.from_state(config, tokens, None, graph=graph)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=40_000, help="items in the model (default: 40,000)")
    parser.add_argument("--days", type=int, default=5, help="random days in the temporal graph (default: 5)")
    parser.add_argument("--requests", type=int, default=2000, help="one-session requests per phase")
    parser.add_argument("--batch-requests", type=int, default=200, help="100-session requests per phase")
    parser.add_argument("--clients", type=int, default=4, help="connections of the throughput phase")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as scratch:
        recommender = random_recommender(args.items, days=args.days)
        recommender.save(Path(scratch) / "model")
        torch.set_num_threads(1)
        load_before = os.getloadavg()[0]
        model_only = in_process(recommender, rng, args.requests, args.k)
        port = free_port()
        service = start_service(Path(scratch) / "model", port)
        try:
            measure(port, bodies(rng, args.items, 1, 200, args.k), 1)  # warm-up
            results = {}
            for per_request, n in ((1, args.requests), (100, args.batch_requests)):
                payloads = bodies(rng, args.items, per_request, n, args.k)
                results[f"{per_request}_session"] = {
                    "sequential": measure(port, payloads, 1),
                    "concurrent": measure(port, payloads, args.clients),
                }
        finally:
            service.terminate()
            service.wait(timeout=30)
    report = {
        "items": args.items,
        "embedding_size": 100,
        "k": args.k,
        "torch_threads": 1,
        "load_average_1min_before": round(load_before, 2),
        "load_average_1min_after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "in_process_1_session": model_only,
        "results": results,
    }
    print(json.dumps(report, indent=2))
    if args.output:
        write_atomic_text(args.output, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
