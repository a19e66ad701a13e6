"""The temporal graph at scale: ``TemporalGraph.advance()`` speed and the running graph's memory.

* **Speed.** One day's transitions folded in by ``advance()`` (Eq. 1: ``E <- d E + e^t``, pruning included),
  timed on every day after the graph has reached its steady size; edges/s = transitions / seconds.
  Target: >= 1M edges/s.
* **Memory.** The running graph's CSR bytes (data + indices + indptr) from day 30 to day 365 with the
  default pruning (``prune_below = 2^-16``), against keeping every day's adjacency (the sum of the daily
  CSR matrices, what a graph without forgetting must hold). Target: the pruned graph flat within 10 %.

The days come from :func:`recbole_tasrec.data.synthetic.generate` (bench_training's item scale and daily
sessions, drifting popularity and item lifetimes), turned into transitions with the package's own
``transition_pairs``.

    uv run python -m benchmarks.bench_graph                          # the recorded run (~1 min)
    uv run python -m benchmarks.bench_graph --days 60 --items 2000   # smoke run

Writes ``benchmarks/results/graph_<date>.json`` and ``graph_<date>.png`` beside it (``--output``); a smaller run
writes to ``runs/bench_results/``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import pyplot, result_header, result_path, save_figure, write_result

SPEED_TARGET = 1_000_000  # edges/s
FLAT_TARGET = 0.10  # the pruned graph's bytes at day 365 within 10 % of day 30's
CHECKPOINTS = (30, 60, 90, 120, 180, 240, 300, 365)


def day_transitions(args: argparse.Namespace) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every generated day's (src, dst) click pairs."""
    from recbole_tasrec.data.clicks import transition_pairs
    from recbole_tasrec.data.synthetic import SyntheticConfig, generate

    cfg = SyntheticConfig(n_items=args.items, sessions_per_day=args.sessions_per_day, n_days=args.days, seed=0)
    df = generate(cfg)
    session = df["session_id"].to_numpy()
    items = df["item_id"].to_numpy()
    start = df.groupby("session_id")["timestamp"].transform("min").to_numpy()
    day = (start - df["timestamp"].min()) // 86_400  # a session belongs to the day it starts
    bounds = np.searchsorted(day, np.arange(args.days + 1))
    return [transition_pairs(session[a:b], items[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def csr_bytes(matrix: Any) -> int:
    return int(matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from recbole_tasrec.data.temporal_graph import TemporalGraph, day_matrix

    days = day_transitions(args)
    graph = TemporalGraph(args.items + 1, decay=args.decay, edge_weight="binary", prune_below=2**-16)
    keep_all_bytes = 0
    rows: list[dict[str, Any]] = []
    speed: list[float] = []
    advance_ms: list[float] = []
    for t, (src, dst) in enumerate(days):
        tick = time.perf_counter()
        graph.advance(src, dst)
        seconds = time.perf_counter() - tick
        keep_all_bytes += csr_bytes(day_matrix(src, dst, graph.n_items, "binary"))
        if t >= args.steady_from:
            speed.append(src.size / seconds)
            advance_ms.append(1000 * seconds)
        if t + 1 in CHECKPOINTS:
            rows.append(
                {
                    "day": t + 1,
                    "pruned_nnz": graph.nnz,
                    "pruned_mib": round(csr_bytes(graph._weights) / 2**20, 3),
                    "keep_every_day_mib": round(keep_all_bytes / 2**20, 3),
                }
            )
    transitions = [src.size for src, _ in days[args.steady_from :]]
    first = next(r for r in rows if r["day"] == CHECKPOINTS[0])
    growth = max(abs(r["pruned_mib"] / first["pruned_mib"] - 1) for r in rows)
    return {
        "speed": {
            "days_timed": len(speed),
            "transitions_per_day_median": int(statistics.median(transitions)),
            "advance_ms_median": round(statistics.median(advance_ms), 2),
            "edges_per_s_median": round(statistics.median(speed)),
            "edges_per_s_p10": round(float(np.percentile(speed, 10))),
            "edges_per_s_p90": round(float(np.percentile(speed, 90))),
        },
        "memory": rows,
        "verdict": {
            "speed_target": f">= {SPEED_TARGET:,} edges/s",
            "speed": "PASS" if statistics.median(speed) >= SPEED_TARGET else "FAIL",
            "pruned_growth_from_day_30": round(growth, 3),
            "flat_target": f"within {FLAT_TARGET:.0%} of day 30",
            "flat": "PASS" if growth <= FLAT_TARGET else "FAIL",
        },
    }


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    fig, ax = pyplot().subplots(figsize=(6, 3.5))
    days = [r["day"] for r in rows]
    ax.plot(days, [r["keep_every_day_mib"] for r in rows], "o-", label="every day's adjacency kept")
    ax.plot(days, [r["pruned_mib"] for r in rows], "s-", label="running graph, pruned below 2^-16")
    ax.set_xlabel("days folded in")
    ax.set_ylabel("CSR memory (MiB)")
    ax.set_title("Temporal graph memory (bench_graph.py)")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=25_000, help="SyntheticConfig.n_items (bench_training's)")
    parser.add_argument("--sessions-per-day", type=int, default=3_400)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--decay", type=float, default=0.5)
    parser.add_argument("--steady-from", type=int, default=30, help="time advance() from this day on")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None, help="the JSON file, the plot beside it (default: see result_path)")
    args = parser.parse_args(argv)
    if args.days < CHECKPOINTS[0] or args.steady_from >= args.days:
        parser.error(f"--days must be >= {CHECKPOINTS[0]} and above --steady-from")

    result = {**result_header("bench_graph", argv, args.threads), "settings": vars(args), **run(args)}
    output = result_path("graph", args.output, args.days >= CHECKPOINTS[-1] and args.items >= 25_000)
    plot(result["memory"], output.with_suffix(".png"))
    write_result(result, output)
    s, v = result["speed"], result["verdict"]
    print(
        f"advance(): {s['edges_per_s_median']:,} edges/s median "
        f"({s['transitions_per_day_median']:,} transitions a day): {v['speed']}"
    )
    for r in result["memory"]:
        print(f"day {r['day']:>3}: pruned {r['pruned_mib']:.2f} MiB, every day kept {r['keep_every_day_mib']:.2f} MiB")
    print(f"pruned graph within {v['pruned_growth_from_day_30']:.1%} of day 30: {v['flat']}; written to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
