"""The output layer's products and loss at bench_training's shapes (change 5 in benchmarks/README.md).

    uv run python -m benchmarks.bench_output_layer [--items 20414] [--batch 128] [--dim 100] [--threads 2]

Times, in ms (median of ``--repeats``): the score product both ways round, ``s @ X.T`` (``(B, n)``) and
``X @ s.T`` (``(n, B)``), and a forward + backward of Eq. 8-9 as torch's composition (``s @ X.T``,
``index_fill``, ``cross_entropy``) against :func:`recbole_tasrec.model.full_softmax.full_softmax_cross_entropy`.
Writes ``benchmarks/results/output_layer_<date>.json`` (or ``--output``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common import result_header, result_path, write_result
from recbole_tasrec.model.full_softmax import full_softmax_cross_entropy


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - tick))
    return round(statistics.median(times), 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=20414, help="bench_training's items after the filters")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    header = result_header("bench_output_layer", argv, args.threads)
    gen = torch.Generator().manual_seed(0)
    session = torch.randn(args.batch, args.dim, generator=gen, requires_grad=True)
    items = torch.randn(args.items, args.dim, generator=gen, requires_grad=True)
    target = torch.randint(1, args.items, (args.batch,), generator=gen)
    padding = torch.zeros(1, dtype=torch.long)

    def composition() -> None:
        scores = (session @ items.t()).index_fill(1, padding, float("-inf"))
        torch.nn.functional.cross_entropy(scores, target).backward()

    def fused() -> None:
        full_softmax_cross_entropy(session, items, target).backward()

    with torch.no_grad():
        figures = {
            "s @ X.T (B, n)": median_ms(lambda: session @ items.t(), args.repeats),
            "X @ s.T (n, B)": median_ms(lambda: items @ session.t(), args.repeats),
        }
    figures["loss fwd+bwd, torch composition"] = median_ms(composition, args.repeats)
    figures["loss fwd+bwd, full_softmax_cross_entropy"] = median_ms(fused, args.repeats)
    result = {
        **header,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "median_ms": figures,
    }
    output = write_result(result, result_path("output_layer", args.output, full_scale=True))
    for name, ms in figures.items():
        print(f"{name:<42} {ms:8.2f} ms")
    print(f"written to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
