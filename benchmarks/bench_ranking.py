"""The serving ranking's three kernels at a 40,000-item TASRec's shapes: session vectors, product, top-k.

    uv run python -m benchmarks.bench_ranking [--items 40000] [--dim 100] [--repeats 500]

Times in ms (median of ``--repeats``, 1 thread) for 1, 4 and 16 sessions of 1-10 clicks: the session vectors by
``TASRec.forward`` (torch) against the NumPy :class:`~recbole_tasrec.serve.session_encoder.SessionEncoder` serving
uses (checked equal), on an untrained TASRec whose graph folded in 5 random days (``random_recommender``);
``s @ X.T`` with the table row-major (as the model holds it) against the column-major copy the ranking keeps
(``Ranker.columns_of``); ``torch.topk`` of the scores against :func:`recbole_tasrec.serve.topk.topk_rows` (checked
to give the same values). Writes ``benchmarks/results/ranking_<date>.json`` (or ``--output``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from benchmarks.bench_output_layer import median_ms
from benchmarks.bench_serving import random_sessions
from benchmarks.common import result_header, result_path, write_result
from recbole_tasrec.harness.random_model import random_recommender
from recbole_tasrec.serve.topk import topk_rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=40_000)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    threadpool_limits(1)  # NumPy's BLAS too, as the service's --threads 1
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(args.items, args.dim, generator=generator)
    columns = table.t().contiguous()
    result = {**result_header("bench_ranking", argv, 1), "items": args.items, "dim": args.dim, "k": args.k}
    result["sessions"] = {}
    recommender = random_recommender(args.items, days=5, embedding_size=args.dim)
    rng = np.random.default_rng(0)
    for batch in (1, 4, 16):
        seq, lengths = recommender.padded(random_sessions(rng, args.items, batch))
        encoded = recommender.factors(seq, lengths, recommender.state)[0]
        torch.testing.assert_close(encoded, recommender.model_vectors(seq, lengths), rtol=1e-5, atol=1e-6)
        vectors = torch.randn(batch, args.dim, generator=generator)
        scores = vectors @ columns
        assert torch.equal(topk_rows(scores, args.k)[0], torch.topk(scores, args.k, dim=1).values)
        figures = {
            "vectors_torch_forward_ms": median_ms(lambda p=(seq, lengths): recommender.model_vectors(*p), args.repeats),
            "vectors_numpy_encoder_ms": median_ms(
                lambda p=(seq, lengths): recommender.factors(*p, recommender.state), args.repeats
            ),
            "product_row_major_ms": median_ms(lambda v=vectors: v @ table.t(), args.repeats),
            "product_column_major_ms": median_ms(lambda v=vectors: v @ columns, args.repeats),
            "torch_topk_ms": median_ms(lambda s=scores: torch.topk(s, args.k, dim=1), args.repeats),
            "topk_rows_ms": median_ms(lambda s=scores: topk_rows(s, args.k), args.repeats),
        }
        result["sessions"][str(batch)] = figures
        print(batch, figures, flush=True)
    path = result_path("ranking", args.output, args.items >= 40_000)
    print(f"written to {write_result(result, path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
