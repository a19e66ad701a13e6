"""Does the default learning-rate schedule train well at every data size?

    python -m recbole_tasrec.harness schedules --datasets drift5k,sample,diginetica-sample,drift50k

For each data set ``D`` it reads the harness results (:mod:`recbole_tasrec.harness.reproduce`, in ``--results``,
default ``benchmarks/results/`` under the current folder) of each schedule (:data:`SCHEDULES`):
``results/schedules/<D>-<name>.json`` (the name its runs were written under, :data:`RUN_NAMES`), or else the plain
harness run ``results/<D>.json`` when the settings its runs recorded are that schedule's (:func:`schedule_of`).
For each model it compares the default with the best of them, and with :data:`PREVIOUS` (the default before): a paired
t-test over the test samples of the per-sample Recall@20 averaged over seeds (the ``.ranks.npz`` files; the runs
of the harness's default protocol, ``paper``). The default is "within noise" when that test does not separate it
from the best at p < 0.05. ``--run D:schedule=NAME`` reads that cell from ``results/schedules/NAME.json`` instead
(a run under another name, e.g. one given a larger epoch budget).

Writes ``results/schedules/summary.{md,json,png}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from recbole_tasrec.harness.files import pyplot, save_figure, write_json, write_text
from recbole_tasrec.harness.protocols import DEFAULT_PROTOCOL
from recbole_tasrec.harness.reproduce import RESULTS, cell_of, metrics_from_ranks, paired

#: The compared schedules: ``plateau-pN`` is ``lr_scheduler: plateau`` with ``lr_patience: N`` and ``lr_restore_best:
#: True``; ``plateau-old`` the same with ``lr_patience: 2`` and without going back to the best weights.
SCHEDULES = ("paper", "constant", "plateau-old", "plateau-p2", "plateau-p1")
#: The package's default (``tests/test_reproduce.py`` holds it to the settings table).
DEFAULT = "plateau-p1"
#: The schedule the default is also tested against: the default before it.
PREVIOUS = "plateau-p2"
#: The name a schedule's runs were written under (``results/schedules/<D>-<name>.json``) where it is not its own.
RUN_NAMES = {"plateau-p2": "plateau", "plateau-p1": "plateau-patience1"}
METRIC = "recall@20"
#: The row's keys of each test the table shows: the difference and its p-value.
TESTS = (("default_minus_best", "p_value"), ("default_minus_previous", "p_value_previous"))


def schedule_of(config: dict[str, Any]) -> str:
    """The schedule a run's recorded settings ran (runs before ``lr_restore_best`` existed decayed without it;
    before ``lr_patience`` was recorded it was 2)."""
    scheduler = config.get("lr_scheduler")
    if scheduler != "plateau":
        return str(scheduler)
    return f"plateau-p{config.get('lr_patience', 2)}" if config.get("lr_restore_best", False) else "plateau-old"


def schedule_files(
    dataset: str, schedule: str, model: str, results: Path, named: dict[tuple[str, str], str] | None = None
) -> Path | None:
    """The harness json of ``dataset`` under ``schedule``: the one ``named`` for that cell, else its own, else the
    plain harness run if ``model`` ran that schedule there."""
    if named and (dataset, schedule) in named:
        path = results / "schedules" / f"{named[dataset, schedule]}.json"
        if not path.exists():
            raise SystemExit(f"--run {dataset}:{schedule}={named[dataset, schedule]}: {path} does not exist")
        return path
    path = results / "schedules" / f"{dataset}-{RUN_NAMES.get(schedule, schedule)}.json"
    if path.exists():
        return path
    plain = results / f"{dataset}.json"
    if not plain.exists():
        return None
    runs = [run for run in json.loads(plain.read_text())["runs"] if run["model"] == model]
    return plain if runs and all(schedule_of(run.get("config", {})) == schedule for run in runs) else None


def per_sample(path: Path, model: str) -> tuple[np.ndarray, list[float]] | None:
    """Seed-averaged per-sample Recall@20 of ``model`` in one harness result, and each seed's Recall@20."""
    ranks = np.load(path.with_name(path.name.removesuffix(".json") + ".ranks.npz"))
    keys = [k for k in ranks.files if cell_of(k)[:2] == (DEFAULT_PROTOCOL, model)]
    if not keys:
        return None
    values = [metrics_from_ranks(ranks[k], [METRIC])[METRIC] for k in keys]
    return np.mean(values, axis=0), [float(v.mean()) for v in values]


def compare(
    dataset: str, model: str, results: Path, named: dict[tuple[str, str], str] | None = None
) -> dict[str, Any] | None:
    found = {}
    for schedule in SCHEDULES:
        path = schedule_files(dataset, schedule, model, results, named)
        values = per_sample(path, model) if path else None
        if values is not None:
            found[schedule] = {"file": str(path.relative_to(results)), "samples": values[0], "seeds": values[1]}
    if len(found) < 2:
        return None
    sizes = {entry["samples"].size for entry in found.values()}
    if len(sizes) != 1:
        raise SystemExit(f"{dataset}, {model}: the schedules' results were tested on different samples {sizes}")
    best = max(found, key=lambda s: (found[s]["samples"].mean(), s == DEFAULT))  # a tie goes to the default
    row: dict[str, Any] = {"dataset": dataset, "model": model, "best": best, "test_samples": sizes.pop()}
    for schedule, entry in found.items():
        row[schedule] = {"mean": float(np.mean(entry["seeds"])), "std": float(np.std(entry["seeds"])),
                         "seeds": len(entry["seeds"]), "file": entry["file"]}  # fmt: skip
    if DEFAULT not in found:
        row["verdict"] = "default not run"
        return row
    # identical runs (the default is the best, or no plateau decay happened) give no test: p = 1
    test = paired(found[DEFAULT]["samples"], found[best]["samples"], f"{dataset}, {model}: the schedules")
    row["default_minus_best"], row["p_value"] = test["difference"], test["p_value"]
    row["verdict"] = "best" if best == DEFAULT else ("within noise" if row["p_value"] >= 0.05 else "worse")
    if PREVIOUS in found:
        test = paired(found[DEFAULT]["samples"], found[PREVIOUS]["samples"], f"{dataset}, {model}: {PREVIOUS}")
        row["default_minus_previous"], row["p_value_previous"] = test["difference"], test["p_value"]
    twins = [s for s in found if s != DEFAULT and np.array_equal(found[s]["samples"], found[DEFAULT]["samples"])]
    if twins:  # e.g. constant, when the plateau never decayed
        row["verdict"] += f" (the same ranks as {', '.join(twins)})"
    return row


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = [f"# The default schedule ({DEFAULT}) against the others: test Recall@20 (%)", "",
             f"Command: `{command}`. Mean +- std over seeds (n); the tests are paired t-tests over test samples of",
             "the seed-averaged per-sample Recall@20: the default against the best schedule, and against",
             f"`{PREVIOUS}`, the default before. `plateau-pN`: x0.1 after N evaluations without improvement, from the",
             "best evaluation's weights (`lr_patience: N`, `lr_restore_best: True`); `plateau-old`: `plateau-p2` from",
             "the last weights.", "",
             "| data set | model | " + " | ".join(f"{s} (default)" if s == DEFAULT else s for s in SCHEDULES)
             + f" | best | default - best (pp) | p | default - {PREVIOUS} (pp) | p | verdict |",
             "|---|---|" + "---|" * (len(SCHEDULES) + 6)]  # fmt: skip
    for row in rows:
        cells = []
        for schedule in SCHEDULES:
            entry = row.get(schedule)
            cells.append(f"{100 * entry['mean']:.1f} +- {100 * entry['std']:.1f} ({entry['seeds']})" if entry else "-")
        tests = [f"{100 * row[d]:+.1f} | {row[p]:.2g}" if d in row else "- | -" for d, p in TESTS]
        where = f"{row['dataset']} ({row['test_samples']} tests)"
        lines.append(f"| {where} | {row['model']} | {' | '.join(cells)} | {row['best']} | {' | '.join(tests)} "
                     f"| {row['verdict']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def chart(path: Path, rows: list[dict[str, Any]]) -> None:
    """Bars of each schedule's mean Recall@20 (seeds' std as error bars) per data set and model."""
    fig, ax = pyplot().subplots(figsize=(max(6, 0.9 * len(rows)), 4))
    width = 0.8 / len(SCHEDULES)
    for i, schedule in enumerate(SCHEDULES):
        means = [100 * row[schedule]["mean"] if schedule in row else np.nan for row in rows]
        stds = [100 * row[schedule]["std"] if schedule in row else 0.0 for row in rows]
        ax.bar(np.arange(len(rows)) + i * width, means, width, yerr=stds, capsize=2, label=schedule)
    labels = [f"{r['dataset']}\n{r['model']}" for r in rows]
    ax.set_xticks(np.arange(len(rows)) + width * (len(SCHEDULES) - 1) / 2, labels, fontsize=7)
    ax.set_ylabel("test Recall@20 (%)")
    ax.set_title("learning-rate schedules by data set and model")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def named_runs(specs: list[str], parser: argparse.ArgumentParser) -> dict[tuple[str, str], str]:
    """``--run D:SCHEDULE=NAME`` options as ``{(D, SCHEDULE): NAME}``; a malformed one or an unknown schedule is an
    argparse error."""
    named = {}
    for spec in specs:
        cell, _, name = spec.partition("=")
        dataset, _, schedule = cell.partition(":")
        if not (dataset and name and schedule in SCHEDULES) or "/" in name:
            parser.error(f"--run {spec!r}: expected D:SCHEDULE=NAME, SCHEDULE one of {', '.join(SCHEDULES)}")
        named[dataset, schedule] = name
    return named


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", required=True, help="comma-separated harness result names")
    parser.add_argument("--models", default="TASRec,TASRec-base,SRGNN")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--run", action="append", default=[], metavar="D:SCHEDULE=NAME",
                        help="read data set D's SCHEDULE from results/schedules/NAME.json (repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    named = named_runs(args.run, parser)
    rows = [row for dataset in args.datasets.split(",") for model in args.models.split(",")
            if (row := compare(dataset, model, args.results, named)) is not None]  # fmt: skip
    if not rows:
        raise SystemExit("no data set has two schedules' results for these models")
    command = "python -m recbole_tasrec.harness schedules " + " ".join(argv if argv is not None else sys.argv[1:])
    out = args.results / "schedules" / "summary"
    write_text(out.with_name(out.name + ".md"), markdown(rows, command))
    write_json(out.with_name(out.name + ".json"), rows, indent=1)
    chart(out.with_name(out.name + ".png"), rows)
    print(markdown(rows, command))
    return rows
