"""Batch-local vs whole-table TemporalGCN (Eq. 2, 3): forward + backward time per training step.

Diginetica-like scale by default: 43,000 items, d = 100, a batch of 128 sessions x 10 items,
a random symmetric temporal graph with ~120k directed edges, K = 2, 2 torch threads.

    uv run python -m benchmarks.bench_temporal_gcn [--items 43000 --dim 100 ...]

Writes ``benchmarks/results/temporal_gcn_<date>.json`` at the default 43,000 items, else ``runs/bench_results/``
(``--output``).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from typing import Any

import torch

from benchmarks.common import result_header, result_path, write_result
from recbole_tasrec.model.sparse import csr_row_block
from recbole_tasrec.model.temporal_gcn import TemporalGCN


def random_propagation(n_items: int, n_edges: int, gen: torch.Generator) -> torch.Tensor:
    """``P = (E + I) / (rowsum(E) + 1)`` as CSR, ``E`` symmetric with ~``n_edges`` directed edges."""
    src = torch.randint(1, n_items, (n_edges // 2,), generator=gen)
    dst = torch.randint(1, n_items, (n_edges // 2,), generator=gen)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    weight = 1 + torch.rand(src.numel(), generator=gen)  # decayed weights lie in [1, 2)
    rows = torch.cat([src, dst, torch.arange(n_items)])
    cols = torch.cat([dst, src, torch.arange(n_items)])
    values = torch.cat([weight, weight, torch.ones(n_items)])
    matrix = torch.sparse_coo_tensor(
        torch.stack([rows, cols]), values, (n_items, n_items), check_invariants=True
    ).coalesce()
    row_sum = torch.zeros(n_items).index_add_(0, matrix.indices()[0], matrix.values())
    values = matrix.values() / row_sum[matrix.indices()[0]]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        normalised = torch.sparse_coo_tensor(matrix.indices(), values, (n_items, n_items), check_invariants=True)
        return normalised.coalesce().to_sparse_csr()


def time_steps(
    gcn: TemporalGCN, x: torch.Tensor, p: torch.Tensor, batches: list[torch.Tensor], mode: str, warmup: int
) -> list[float]:
    """Milliseconds of one forward + backward (grads to X and W1) for each of ``batches``."""
    times = []
    for i, items in enumerate(batches):
        x.grad = None
        gcn.zero_grad(set_to_none=True)
        start = time.perf_counter()
        out = gcn(x, p, items, mode=mode)
        out.square().sum().backward()
        if i >= warmup:
            times.append(1000 * (time.perf_counter() - start))
    return times


def frontier_sizes(p: torch.Tensor, items: torch.Tensor, layers: int) -> list[int]:
    """Rows the local path touches per layer, ``|S_K|..|S_0|``: the batch's items, then their neighbours'."""
    items = torch.unique(items)
    sizes = [items.numel()]
    for _ in range(layers):
        items = torch.unique(torch.cat([items, csr_row_block(p, items)[1]]))
        sizes.append(items.numel())
    return sizes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=43_000)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--edges", type=int, default=120_000, help="directed edges of E")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--length", type=int, default=10)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--output", default=None, help="the JSON file (default: see the docstring)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {**result_header("bench_temporal_gcn", argv, args.threads), "settings": vars(args)}
    gen = torch.Generator().manual_seed(0)
    p = random_propagation(args.items, args.edges, gen)
    x = torch.randn(args.items, args.dim, generator=gen).requires_grad_(True)
    gcn = TemporalGCN(args.dim, args.layers)
    batches = [
        torch.randint(1, args.items, (args.batch, args.length), generator=gen) for _ in range(args.steps + args.warmup)
    ]

    # the two paths agree (same numbers, up to float32 summation order)
    with torch.no_grad():
        local, full = gcn(x, p, batches[0], mode="local"), gcn(x, p, batches[0], mode="full")
    assert torch.allclose(local, full, rtol=1e-4, atol=1e-5), (local - full).abs().max()

    gcn(x, p, batches[0], mode="auto")
    result.update(nnz_p=p.values().numel(), auto_mode=gcn.last_mode)
    result["rows_per_layer"] = frontier = frontier_sizes(p, batches[0], args.layers)

    print(
        f"items={args.items} d={args.dim} nnz(P)={p.values().numel()} (directed edges + self loops) "
        f"batch={args.batch}x{args.length} K={args.layers} threads={torch.get_num_threads()}"
    )
    print(f"rows per layer |S_K|..|S_0| = {frontier}; auto mode picks '{result['auto_mode']}'")
    for mode in ("local", "full"):
        ms = sorted(time_steps(gcn, x, p, batches, mode, args.warmup))
        result[f"{mode}_ms_per_step"] = {"median": round(statistics.median(ms), 2), "min": ms[0], "max": ms[-1]}
        print(
            f"{mode:>5}: median {statistics.median(ms):7.1f} ms per step (forward + backward), "
            f"min {ms[0]:.1f}, max {ms[-1]:.1f}"
        )
    with torch.no_grad():
        start = time.perf_counter()
        for _ in range(5):
            gcn.full_table(x, p)
        result["whole_table_no_grad_ms"] = round(1000 * (time.perf_counter() - start) / 5, 2)
    print(f"whole table, no grad (evaluation, once per day): {result['whole_table_no_grad_ms']:.1f} ms")
    print(f"written to {write_result(result, result_path('temporal_gcn', args.output, args.items >= 43_000))}")


if __name__ == "__main__":
    main()
