"""Shop scale: a million items and ten million transitions a day, trained, evaluated and served on one machine.

A generated log (``--items``, ``--transitions-per-day``, ``--days``) is written to a temporary folder one block of
sessions at a time (never whole in memory): item popularity is a power law (Zipf, exponent 1.1) whose ranks drift
(2 % of them swap every day); a session picks an anchor by popularity and each click is, with probability 0.7, one
of the anchor's 16 rank neighbours (related items: pairs repeat, as co-views do in a shop), else a popular item.
Each measurement runs in its own process, so each peak RSS is its own:

* **graph**: ``TemporalGraph.advance`` per day (``advance_seconds`` = the median), the graph's CSR bytes after each
  day (``graph_peak_mib``, the largest) and the process's peak RSS; then the temporal GCN over the whole table
  (Eq. 2-3 for every item, what evaluation and serving compute once a day) with its time and memory.
* **train**: TASRec training steps on sessions of the last day, full softmax (Eq. 9) against ``loss_type:
  sampled`` (``--num-negatives``): samples/s of each, ``sampled_speedup``, ``train_peak_rss_mib``, each step's
  forward + loss, backward and optimiser times; and the output layer alone (loss, backward and Adam on the item
  table from given session vectors: the floor of a step). ``--max-neighbors`` and ``--lazy-adam`` set TASRec's
  keys of those names (both off by default: the paper's GCN and Adam).
* **serve**: one-session requests with 1 and 2 threads: TASRec's session vector, then the exact top-20 over every
  item two ways: a blocked fp32 matrix product with a running top-k (``recbole_tasrec.chunked_eval``) and the
  int8-bounded index of ``recbole_tasrec.serve.topk`` (what serving uses above ``bounded_topk_above`` items),
  checked equal to it; ``serve_p90_ms`` is the index's with one thread (the serving CLI's default: on a loaded
  machine two threads wait for each other). Then one evaluation batch ranked by the
  blocked scan (``eval_batch_seconds``, at most ``eval_block_mib`` of scores alive).

Targets (issue "shop scale", 2 cores): advance < 10 s, graph < 4 GiB, sampled >= 5x, training < 16 GiB, p90 < 20 ms.

    uv run python -m benchmarks.bench_scale                                              # the recorded run
    uv run python -m benchmarks.bench_scale --items 20000 --transitions-per-day 200000   # smoke run
    uv run python -m benchmarks.bench_scale --phases graph,serve --output FILE           # serving only
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import load_average, peak_rss_mib, result_header, result_path, write_result

FULL_ITEMS, FULL_TRANSITIONS = 1_000_000, 10_000_000
TARGETS = {
    "advance_seconds": 10.0,
    "graph_peak_mib": 4096.0,
    "sampled_speedup": 5.0,
    "train_peak_rss_mib": 16384.0,
    "serve_p90_ms": 20.0,
}
NEIGHBOURS, RELATED = 16, 0.7  # the generator's related items per anchor and the chance a click is one


# --- the generated log ---------------------------------------------------------------------------------------
def popularity_cdf(n_items: int, exponent: float = 1.1) -> np.ndarray:
    weights = 1.0 / np.arange(1, n_items + 1, dtype=np.float64) ** exponent
    return np.cumsum(weights) / weights.sum()


def write_log(folder: Path, items: int, transitions_per_day: int, days: int, seed: int) -> None:
    """``day<t>.items`` / ``day<t>.lengths`` (int32) per day: the clicks of each session, one block at a time.
    Item ids are ``1..items`` (0 is RecBole's padding)."""
    rng = np.random.default_rng(seed)
    cdf = popularity_cdf(items)
    rank_to_item = rng.permutation(items).astype(np.int64) + 1
    block = 200_000  # sessions per block: about 50 MB of arrays
    for day in range(days):
        swap = rng.choice(items, size=items // 50, replace=False)  # drift: 2 % of the ranks change items
        rank_to_item[swap] = rank_to_item[rng.permutation(swap)]
        left = transitions_per_day
        with open(folder / f"day{day}.items", "wb") as fi, open(folder / f"day{day}.lengths", "wb") as fl:
            while left > 0:
                lengths = np.minimum(2 + rng.geometric(0.33, block), 50)
                lengths = lengths[: np.searchsorted(np.cumsum(lengths - 1), left) + 1]
                lengths[-1] -= max(0, int((lengths - 1).sum()) - left)
                n = int(lengths.sum())
                anchor = np.repeat(np.searchsorted(cdf, rng.random(len(lengths))), lengths)
                offset = rng.integers(-NEIGHBOURS // 2, NEIGHBOURS // 2 + 1, n)
                popular = np.searchsorted(cdf, rng.random(n))
                rank = np.where(rng.random(n) < RELATED, (anchor + offset) % items, popular)
                rank_to_item[rank].astype(np.int32).tofile(fi)
                lengths.astype(np.int32).tofile(fl)
                left -= int((lengths - 1).sum())


def read_day(folder: Path, day: int) -> tuple[np.ndarray, np.ndarray]:
    """One day's sessions: ``(lengths, items)``."""
    return np.fromfile(folder / f"day{day}.lengths", np.int32), np.fromfile(folder / f"day{day}.items", np.int32)


# --- the measurements, each in its own process --------------------------------------------------------------
def peak_rss() -> float:
    """This process's peak resident set so far, in MiB to 1 place."""
    return round(peak_rss_mib(), 1)


def graph_phase(folder: str, args: dict[str, Any]) -> dict[str, Any]:
    """``advance`` every day, then the temporal GCN over the whole table; the graph is saved for the others."""
    import torch

    from recbole_tasrec.data.clicks import transition_pairs
    from recbole_tasrec.data.temporal_graph import TemporalGraph
    from recbole_tasrec.model.temporal_gcn import TemporalGCN

    torch.set_num_threads(args["threads"])
    graph = TemporalGraph(args["items"] + 1)
    days = []
    for day in range(args["days"]):
        lengths, items = read_day(Path(folder), day)
        src, dst = transition_pairs(np.repeat(np.arange(len(lengths)), lengths), items)
        tick = time.perf_counter()
        graph.advance(src, dst)
        seconds = time.perf_counter() - tick
        w = graph._weights
        mib = (w.data.nbytes + w.indices.nbytes + w.indptr.nbytes) / 2**20
        days.append(
            {
                "day": day,
                "transitions": int(src.size),
                "advance_seconds": round(seconds, 3),
                "nnz": graph.nnz,
                "graph_mib": round(mib, 1),
                "peak_rss_mib": peak_rss(),
            }
        )
        print(f"  day {day}: advance {seconds:.2f} s, nnz {graph.nnz:,}, {mib:.0f} MiB", flush=True)
    np.savez(Path(folder) / "graph.npz", **graph.state_dict())
    rss_before = peak_rss()
    tick = time.perf_counter()
    propagation = graph.propagation(1.0)
    prep = time.perf_counter() - tick
    gcn = TemporalGCN(args["embedding_size"], 2)
    weight = torch.randn(args["items"] + 1, args["embedding_size"]) * 0.1
    tick = time.perf_counter()
    with torch.no_grad():
        table = gcn.full_table(weight, propagation)
    gcn_seconds = time.perf_counter() - tick
    return {
        "days": days,
        "advance_seconds": round(statistics.median(d["advance_seconds"] for d in days), 3),
        # the last days: with 17+ days the graph has stopped growing (prune_below 2^-16 at decay 1/2)
        "advance_seconds_last5": round(statistics.median(d["advance_seconds"] for d in days[-5:]), 3),
        "graph_peak_mib": max(d["graph_mib"] for d in days),
        "graph_phase_peak_rss_mib": rss_before,
        "gcn_full_table": {
            "propagation_seconds": round(prep, 2),
            "gcn_seconds": round(gcn_seconds, 2),
            "table_mib": round(table.numel() * 4 / 2**20, 1),
            "peak_rss_mib": peak_rss(),
        },
    }


def _model(folder: str, args: dict[str, Any]) -> Any:
    """An untrained TASRec of ``items + 1`` items (random weights cost what trained ones do) on the saved graph."""
    import torch

    from recbole_tasrec.config import Config
    from recbole_tasrec.data.temporal_graph import TemporalGraph
    from recbole_tasrec.model import TASRec
    from recbole_tasrec.serve.recommender import LatestGraph

    torch.set_num_threads(args["threads"])
    torch.manual_seed(0)
    with np.load(Path(folder) / "graph.npz", allow_pickle=False) as saved:  # our own file, no pickle
        graph = TemporalGraph.from_state_dict({key: saved[key] for key in saved.files})
    settings = {"state": "WARNING", "embedding_size": args["embedding_size"]}
    settings.update(max_neighbors=args["max_neighbors"], lazy_adam=args["lazy_adam"])
    config = Config("TASRec", "sample", config_dict=settings)
    tokens = np.arange(args["items"] + 1).astype(str)
    return TASRec.from_graph_source(config, tokens, LatestGraph(graph, 1.0))


def _batch(lengths: np.ndarray, items: np.ndarray, rows: np.ndarray, day: int, max_len: int = 50) -> dict:
    """Sessions ``rows`` of a day as a RecBole-like batch: all clicks but the last as the sequence, the last as the
    target."""
    import torch

    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    seq_len = np.minimum(lengths[rows] - 1, max_len)
    ends = starts[rows] + lengths[rows] - 1  # the target's position
    pos = ends[:, None] - seq_len[:, None] + np.arange(max_len)[None, :]
    seq = np.where(np.arange(max_len)[None, :] < seq_len[:, None], items[np.minimum(pos, len(items) - 1)], 0)
    return {
        "item_id_list": torch.as_tensor(seq, dtype=torch.long),
        "item_length": torch.as_tensor(seq_len, dtype=torch.long),
        "item_id": torch.as_tensor(items[ends], dtype=torch.long),
        "day": torch.full((len(rows),), day, dtype=torch.long),
    }


def train_phase(folder: str, args: dict[str, Any]) -> dict[str, Any]:
    """Training steps (forward, loss, backward, fused Adam) with the full and the sampled softmax."""
    import torch

    from recbole_tasrec.lazy_adam import LazyAdam
    from recbole_tasrec.model.sampled_softmax import PopularitySampler

    model = _model(folder, args).train()
    if args["lazy_adam"]:  # what the trainer builds for lazy_adam: True
        optimizer = LazyAdam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5, fused=True)
    lengths, items = read_day(Path(folder), args["days"] - 1)
    counts = torch.bincount(torch.as_tensor(items, dtype=torch.long), minlength=args["items"] + 1)
    sampler = PopularitySampler(counts, args["num_negatives"], 0.75)
    rng = np.random.default_rng(1)
    result: dict[str, Any] = {}
    for name, steps in (("full", args["full_steps"]), ("sampled", args["sampled_steps"])):
        model.negative_sampler = sampler if name == "sampled" else None
        parts = dict.fromkeys(("loss", "backward", "adam"), 0.0)  # forward + loss, backward, the optimiser step
        paths = set()
        for step in range(steps + 2):  # two warm-up steps
            batch = _batch(lengths, items, rng.integers(0, len(lengths), args["batch_size"]), args["days"])
            ticks = [time.perf_counter()]
            optimizer.zero_grad()
            loss = model.calculate_loss(batch)
            ticks.append(time.perf_counter())
            loss.backward()
            ticks.append(time.perf_counter())
            optimizer.step()
            ticks.append(time.perf_counter())
            paths.add(model.temporal_gcn.last_mode)
            for part, seconds in zip(parts, np.diff(ticks), strict=True):
                parts[part] += seconds if step >= 2 else 0.0
        timed = float(sum(parts.values()))
        result[f"{name}_samples_per_s"] = round(steps * args["batch_size"] / timed, 1)
        result[f"{name}_step_ms"] = round(1000 * timed / steps, 1)
        result[f"{name}_step_parts_ms"] = {part: round(1000 * float(s) / steps, 1) for part, s in parts.items()}
        result[f"{name}_gcn_paths"] = sorted(paths)  # the temporal GCN's path: local (batch rows) or full table
        print(f"  {name}: {result[f'{name}_step_ms']} ms a step {result[f'{name}_step_parts_ms']} {paths}", flush=True)
    result["sampled_speedup"] = round(result["sampled_samples_per_s"] / result["full_samples_per_s"], 2)
    result["train_peak_rss_mib"] = peak_rss()
    result["output_layer"] = output_layer_speed(model.item_embedding.weight, sampler, args)
    return result


def output_layer_speed(weight: Any, sampler: Any, args: dict[str, Any]) -> dict[str, Any]:
    """The output layer alone (Eq. 8-9 from given session vectors: loss, backward, fused Adam on the item table):
    the floor a training step cannot go below, full against sampled."""
    import torch

    from recbole_tasrec.model.full_softmax import full_softmax_cross_entropy

    optimizer = torch.optim.Adam([weight], lr=1e-3, fused=True)
    result = {}
    for name, steps in (("full", args["full_steps"]), ("sampled", args["sampled_steps"])):
        timed = 0.0
        for step in range(steps + 2):
            session = torch.randn(args["batch_size"], weight.size(1), requires_grad=True)
            target = torch.randint(1, weight.size(0), (args["batch_size"],))
            tick = time.perf_counter()
            optimizer.zero_grad()
            if name == "full":
                loss = full_softmax_cross_entropy(session, weight, target)
            else:
                loss = sampler.loss(session, weight, target)
            loss.backward()
            optimizer.step()
            timed += (time.perf_counter() - tick) if step >= 2 else 0.0
        result[f"{name}_step_ms"] = round(1000 * timed / steps, 1)
    result["speedup"] = round(result["full_step_ms"] / result["sampled_step_ms"], 2)
    return result


def serve_phase(folder: str, args: dict[str, Any]) -> dict[str, Any]:
    """One-session requests, 1 and 2 threads: the session vector, then the exact top-20 two ways, the blocked
    fp32 scan (``--scan-requests``) and the int8-bounded index (``--requests``, ``serve/topk.py``), whose answers
    are checked equal to the scan's; then one evaluation batch by the blocked scan."""
    import torch

    from recbole_tasrec.chunked_eval import running_topk, score_blocks
    from recbole_tasrec.serve.topk import BoundedTopK

    model = _model(folder, args).eval()
    lengths, items = read_day(Path(folder), args["days"] - 1)
    rng = np.random.default_rng(2)
    n_items = args["items"] + 1
    result: dict[str, Any] = {"serve_block": args["serve_block"], "k": 20}
    with torch.no_grad():
        tick = time.perf_counter()
        running_topk(score_blocks(model, _batch(lengths, items, np.array([0]), args["days"]), n_items, n_items), 20)
        result["serve_first_request_s"] = round(time.perf_counter() - tick, 2)  # + the day's GCN, once a day
        tick = time.perf_counter()
        index = BoundedTopK(model.item_embedding.weight)
        result["index_build_s"] = round(time.perf_counter() - tick, 2)
        result["index_mib"] = round(index.nbytes() / 2**20, 1)
        padding = (torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))
        for threads in (1, 2):
            torch.set_num_threads(threads)
            sessions = [
                _batch(lengths, items, rng.integers(0, len(lengths), 1), args["days"]) for _ in range(args["requests"])
            ]
            scan, bounded, candidates, equal = [], [], [], 0
            for i, batch in enumerate(sessions):
                tick = time.perf_counter()
                values, found = index.topk(model.full_sort_factors(batch)[0], 20, padding)
                bounded.append(1000 * (time.perf_counter() - tick))
                candidates.append(index.candidates(model.full_sort_factors(batch)[0], 20, padding)[0].numel())
                if i < args["scan_requests"]:
                    tick = time.perf_counter()
                    expected = running_topk(score_blocks(model, batch, n_items, args["serve_block"]), 20)
                    scan.append(1000 * (time.perf_counter() - tick))
                    equal += int(torch.equal(found, expected[1]))
            for name, latencies in (("scan", scan), ("bounded", bounded)):
                q = np.percentile(latencies, [50, 90, 99])
                result[f"{name}_{threads}thread"] = {
                    "p50_ms": round(float(q[0]), 2),
                    "p90_ms": round(float(q[1]), 2),
                    "p99_ms": round(float(q[2]), 2),
                    "requests": len(latencies),
                }
            result[f"bounded_{threads}thread"]["candidates_median"] = int(np.median(candidates))
            result[f"bounded_{threads}thread"]["candidates_max"] = int(max(candidates))
            result[f"bounded_{threads}thread"]["equal_to_scan"] = f"{equal} of {len(scan)}"
            result[f"loadavg_after_{threads}thread"] = load_average()
            print(f"  {threads} thread(s): {result[f'scan_{threads}thread']} {result[f'bounded_{threads}thread']}")
        torch.set_num_threads(args["threads"])
        served = result["bounded_1thread"]  # the serving CLI's default: one torch thread per process
        result.update(serve_p50_ms=served["p50_ms"], serve_p90_ms=served["p90_ms"], serve_p99_ms=served["p99_ms"])
        batch = _batch(lengths, items, rng.integers(0, len(lengths), args["batch_size"]), args["days"])
        tick = time.perf_counter()
        running_topk(score_blocks(model, batch, n_items, args["serve_block"]), 20)
        result["eval_batch_seconds"] = round(time.perf_counter() - tick, 2)  # B x block scores, never B x n_items
    result["eval_block_mib"] = round(args["batch_size"] * args["serve_block"] * 4 / 2**20, 1)
    result["serve_peak_rss_mib"] = peak_rss()
    return result


def in_process(function: Any, folder: str, args: dict[str, Any]) -> dict[str, Any]:
    """``function(folder, args)`` in a fresh process: its peak RSS is its own."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, folder, args).result()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=FULL_ITEMS)
    parser.add_argument("--transitions-per-day", type=int, default=FULL_TRANSITIONS)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--embedding-size", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-negatives", type=int, default=1024)
    parser.add_argument("--full-steps", type=int, default=5)
    parser.add_argument("--sampled-steps", type=int, default=20)
    parser.add_argument("--requests", type=int, default=300, help="one-session requests per thread count")
    parser.add_argument("--scan-requests", type=int, default=50, help="of them also ranked by the fp32 scan")
    parser.add_argument("--serve-block", type=int, default=65536)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-neighbors", type=int, default=None, help="TASRec's max_neighbors (default: all)")
    parser.add_argument("--lazy-adam", action="store_true", help="TASRec's lazy_adam: True (default: Adam)")
    parser.add_argument("--phases", default="graph,train,serve", help="what to measure (train, serve need graph)")
    parser.add_argument("--output", default=None, help="default: benchmarks/results/scale_<date>.json (full scale)")
    args = parser.parse_args(argv)
    if args.days < 1 or args.items < 100 or args.transitions_per_day < 1:
        parser.error("--days >= 1, --items >= 100 and --transitions-per-day >= 1 are needed")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    settings = vars(args).copy()
    result: dict[str, Any] = {**result_header("bench_scale", argv, args.threads), "settings": settings}
    result["targets"] = TARGETS
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as folder:
        tick = time.perf_counter()
        write_log(Path(folder), args.items, args.transitions_per_day, args.days, seed=0)
        result["generate_seconds"] = round(time.perf_counter() - tick, 1)
        print(f"log written in {result['generate_seconds']} s", flush=True)
        for name, phase in (("graph", graph_phase), ("train", train_phase), ("serve", serve_phase)):
            if name not in args.phases.split(","):
                continue
            print(f"{name} ...", flush=True)
            result[name] = in_process(phase, folder, settings)
            result[f"loadavg_after_{name}"] = load_average()
    figures = {**result.get("graph", {}), **result.get("train", {}), **result.get("serve", {})}
    result["summary"] = {key: figures[key] for key in TARGETS if key in figures}
    result["targets_met"] = {
        key: bool(figures[key] >= target if key == "sampled_speedup" else figures[key] < target)
        for key, target in TARGETS.items()
        if key in figures
    }
    full = args.items >= FULL_ITEMS and args.transitions_per_day >= FULL_TRANSITIONS and args.days >= 5
    path = write_result(result, result_path("scale", args.output, full))
    print(f"{result['summary']}\nmet: {result['targets_met']}\nwritten to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
