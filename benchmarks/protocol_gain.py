"""What one protocol gains over another, per model: the paired t-test over test samples between two harness runs.

    uv run python -m benchmarks.protocol_gain benchmarks/results/protocols/sample-protocols.ranks.npz streaming \
        benchmarks/results/protocols/sample-paper.ranks.npz paper --output benchmarks/results/protocols/sample-daily.md

The harness's ``--protocol both`` compares ``streaming`` with ``frozen``, which differ in the graph, the kNN index,
CSRM's memory and the weights at once. Against ``paper`` (the same streaming graph, index and memory, but
``continual: off``), ``streaming`` differs only in ``continual: daily``: this isolates what day-by-day training of
the weights is worth. Both runs must share the data set, split and settings; only models present in both count.
``--against MODEL`` compares each model of the first run with MODEL of the second instead (for instance TASRec
under ``continual: daily`` against streaming STAN).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from benchmarks.common import write_text
from recbole_tasrec.harness.reproduce import cell_of, paired, seed_averaged

METRICS = ("recall@20", "mrr@20")


def models_of(ranks: dict[str, np.ndarray], protocol: str) -> list[str]:
    """The models with at least one run under ``protocol``, in the order they were run."""
    return list(dict.fromkeys(cell_of(key)[1] for key in ranks if cell_of(key)[0] == protocol))


def gain_table(ranks_a: dict, protocol_a: str, ranks_b: dict, protocol_b: str, against: str | None = None) -> str:
    """A markdown table: per model, the mean of ``a - b`` per test sample (seed-averaged) and its p-value; ``b`` is
    the same model's runs, or those of ``against``."""
    lines = [
        f"{protocol_a} minus {protocol_b}, per test sample, seed-averaged, paired t-test",
        "",
        "| model | " + " | ".join(METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    in_b = models_of(ranks_b, protocol_b)
    if against is not None and against not in in_b:
        raise SystemExit(f"--against {against}: no {protocol_b} run of it in the second file (it has {in_b})")
    for model in (m for m in models_of(ranks_a, protocol_a) if against is not None or m in in_b):
        other = model if against is None else against
        cells = []
        for metric in METRICS:
            a = seed_averaged(ranks_a, protocol_a, model, metric)
            b = seed_averaged(ranks_b, protocol_b, other, metric)
            test = paired(a, b, f"{model}'s and {other}'s runs")
            cells.append(f"{100 * test['difference']:+.2f} pp, p = {test['p_value']:.3g} ({test['samples']} tests)")
        lines.append(f"| {model if against is None else f'{model} - {other}'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ranks_a", help="a harness .ranks.npz")
    parser.add_argument("protocol_a", help="its protocol (paper, frozen or streaming)")
    parser.add_argument("ranks_b", help="another harness .ranks.npz, on the same split")
    parser.add_argument("protocol_b")
    parser.add_argument("--against", metavar="MODEL", help="compare with this model of the second run")
    parser.add_argument("--output", help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    with np.load(args.ranks_a) as a, np.load(args.ranks_b) as b:
        table = gain_table(dict(a), args.protocol_a, dict(b), args.protocol_b, args.against)
    print(table)
    if args.output:
        command = "uv run python -m benchmarks.protocol_gain " + " ".join(sys.argv[1:] if argv is None else argv)
        write_text(args.output, f"# What {args.protocol_a} gains over {args.protocol_b}\n\n`{command}`\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
