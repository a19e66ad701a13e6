"""Reproduce the paper's Table 1/2 comparison on any data set, on equal footing, with seeds and significance.

    python -m recbole_tasrec.harness reproduce --dataset sample --models TASRec,TASRec-base,SRGNN --seeds 3

Every model is trained and tested through :func:`recbole_tasrec.run_recbole_tasrec` on the same day split,
with the same embedding size, schedule, epoch budget and early stopping (``EQUAL_FOOTING``, recorded in the
json; any ``--key=value`` overrides it for every model). The rank of every test sample's target, as the run's
test phase scored it (:mod:`~recbole_tasrec.harness.sample_ranks`), gives a paired significance test of TASRec
against the best other model, per test sample, averaged over seeds.

``--protocol`` decides what the models may know when they score a test day
(:mod:`~recbole_tasrec.harness.protocols`): ``paper`` (default) is the package's defaults, where TASRec's graph, the
kNN index and CSRM's memory advance through the validation and test days and the weights do not; ``frozen``: nothing
advances after training; ``streaming``: everything advances, the weights too (``continual: daily``); ``both``:
frozen and streaming side by side, with a paired test of streaming against frozen for every model. Every report
says, for each model, what its weights, graph, index and memory saw at test time, read from its runs' settings.

Writes, in ``--output-dir`` (default ``benchmarks/results/`` under the current folder), ``<name>.json`` (every
metric, seed and configuration, package version and commit), ``<name>.md`` (mean +- std, the paper's figures
beside ours), ``<name>.png`` and ``<name>.ranks.npz`` (the per-sample ranks, which ``--resume`` reuses).
``TASRec-base`` / ``TASRec-temp`` are TASRec without its temporal / session graph (paper Table 2); any other
name is a model of this package or of RecBole.

``--tune-trials N`` replaces the equal settings by equal tuning: each model first gets ``N`` Ray Tune trials
over its search space (``properties/hyper/<Model>.yaml``) on the same split and budget, ranked by validation;
its best settings then train every seed, and the json and the report record them. ``--report-only`` writes
the report again from the json (e.g. of runs that were stopped).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from recbole_tasrec import __version__, distributed, prepare_data, run_recbole_tasrec
from recbole_tasrec.config import Config, get_model
from recbole_tasrec.harness.files import pyplot, save_figure, write_json, write_npz, write_text
from recbole_tasrec.harness.protocols import (
    BOTH,
    DEFAULT_PROTOCOL,
    PARTS,
    PROTOCOLS,
    information_seen,
    protocol_settings,
)
from recbole_tasrec.harness.provenance import source_commit
from recbole_tasrec.harness.sample_ranks import recording_test_ranks

#: the results' folder, relative to the current one (the repository's committed results when run from its root)
RESULTS = Path("benchmarks", "results")
COMMAND = "python -m recbole_tasrec.harness reproduce"
VARIANTS = {
    "TASRec-base": ("TASRec", {"use_temporal_graph": False}),
    "TASRec-temp": ("TASRec", {"use_session_graph": False}),
}
#: the same capacity and training budget for every model (embedding_size: TASRec's 100; hidden_size is the
#: embedding of SASRec / GCSAN and the RNN state of GRU4Rec / NARM). The schedule is overall.yaml's for all.
#: TASRec and its ablations; the paper's baselines (Table 1); RecBole's other session models; the kNN baselines
DEFAULT_MODELS = ["TASRec", "TASRec-base", "TASRec-temp", "SRGNN", "GRU4Rec", "CSRM", "LESSR"]
DEFAULT_MODELS += ["NARM", "STAMP", "SASRec", "GCSAN", "SKNN", "VSKNN", "STAN"]
EQUAL_FOOTING = {"embedding_size": 100, "hidden_size": 100, "epochs": 30, "stopping_step": 5, "train_batch_size": 128}
PAPER_METRICS = {"retailrocket": ["recall@10", "recall@20", "ndcg@100"]}
DEFAULT_METRICS = ["recall@20", "recall@50", "ndcg@100"]
#: paper Table 1 (and Table 2 for Retailrocket), in %, in the order of the data set's metrics
PAPER = {
    "aotm": {"GRU4Rec": [1.70, 3.64, 1.32], "SRGNN": [3.82, 6.94, 2.73], "CSRM": [3.97, 7.30, 2.86],
             "LESSR": [3.11, 5.58, 2.31], "TASRec": [4.42, 7.71, 3.08]},
    "diginetica": {"GRU4Rec": [28.90, 40.02, 15.66], "SRGNN": [48.74, 65.37, 28.41], "CSRM": [48.88, 66.90, 28.34],
                   "LESSR": [49.59, 66.12, 29.03], "TASRec": [50.39, 67.27, 29.48]},
    "retailrocket": {"GRU4Rec": [17.41, 23.11, 12.75], "SRGNN": [36.34, 45.58, 28.93], "CSRM": [37.43, 47.56, 28.43],
                     "LESSR": [37.97, 46.59, 29.84], "TASRec": [39.08, 48.16, 30.36],
                     "TASRec-temp": [36.73, 46.65, 27.55], "TASRec-base": [36.60, 45.45, 28.84]},
}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog="Any --key=value: a RecBole setting.")
    parser.add_argument("--dataset", required=True, help="a folder under data_path (default atomic_data/)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--seeds", type=int, default=3, help="seeds 1..N for every model")
    parser.add_argument(
        "--protocol", choices=[*PROTOCOLS, "both"], default=DEFAULT_PROTOCOL,
        help="what the models may know at test time: paper (the defaults: graph, kNN index and memory advance, the "
        "weights do not), frozen (nothing advances), streaming (everything does, continual: daily), both (frozen "
        "and streaming side by side)",
    )  # fmt: skip
    parser.add_argument("--name", help="result file stem (default: the data set)")
    parser.add_argument("--paper-dataset", help="whose paper figures to show (default: the data set's name)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--resume", action="store_true", help="skip the (protocol, model, seed) runs already in the json"
    )
    parser.add_argument("--report-only", action="store_true", help="no runs: write the report from the json")
    tuning = parser.add_argument_group("equal tuning instead of equal settings")
    tuning.add_argument("--tune-trials", type=int, default=0, help="Ray Tune trials per model (0: no tuning)")
    tuning.add_argument("--tune-address", help="a running Ray cluster for the trials (default: a local Ray)")
    tuning.add_argument("--tune-dir", type=Path, help="the sweeps' folders (default: ./runs/reproduce/<name>)")
    args, rest = parser.parse_known_args(argv)
    overrides: dict[str, Any] = {}
    for arg in rest:
        key, sep, value = arg[2:].partition("=")
        if not arg.startswith("--") or not sep or not key:
            parser.error(f"unrecognised argument {arg!r}: settings are given as --key=value")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    if args.tune_trials < 0:
        parser.error("--tune-trials must be 0 (no tuning) or more")
    return args, overrides


def plain(value: Any) -> Any:
    """A config value as json, or ``None`` for what json cannot hold (devices, classes)."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return None


def cell_key(protocol: str, model: str, seed: int) -> str:
    """The ranks' key of one run: ``model|seed`` under the paper protocol (as before protocols existed, so older
    results resume), ``model|seed|protocol`` under the others; the model always comes first."""
    return f"{model}|{seed}" if protocol == DEFAULT_PROTOCOL else f"{model}|{seed}|{protocol}"


def cell_of(key: str) -> tuple[str, str, int]:
    """``(protocol, model, seed)`` of a key of :func:`cell_key`."""
    model, seed, *protocol = key.split("|")
    return (protocol[0] if protocol else DEFAULT_PROTOCOL), model, int(seed)


def tuning_key(protocol: str, model: str) -> str:
    """Where a model's tuning is kept: one per protocol (validation differs where the index or memory does)."""
    return model if protocol == DEFAULT_PROTOCOL else f"{model}|{protocol}"


def metrics_from_ranks(ranks: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Per-sample Recall@K, NDCG@K, MRR@K of one target per sample (what RecBole averages)."""
    out = {}
    for name in names:
        kind, k = name.split("@")
        hit = ranks <= int(k)
        value = {"recall": 1.0, "ndcg": 1.0 / np.log2(ranks + 1.0), "mrr": 1.0 / ranks}[kind]
        out[name] = np.where(hit, value, 0.0)
    return out


def cell_settings(
    model: str, protocol: str, overrides: dict[str, Any], tuned: dict[str, Any] | None = None, seed: int = 0
) -> tuple[str, dict[str, Any]]:
    """The model class's name and the settings of one run: equal footing, the ablation's switch, the protocol's
    keys that the model reads, the user's ``--key=value``, then tuning's choice and the seed."""
    base, variant = VARIANTS.get(model, (model, {}))
    keys = protocol_settings(protocol, get_model(base))
    settings = {**EQUAL_FOOTING, "show_progress": False, "state": "WARNING", **variant, **keys, **overrides}
    return base, {**settings, **(tuned or {}), "seed": seed}


def run_one(
    model: str,
    seed: int,
    args: argparse.Namespace,
    overrides: dict[str, Any],
    tuned: dict[str, Any] | None = None,
    protocol: str = DEFAULT_PROTOCOL,
) -> tuple[dict, np.ndarray]:
    """Train and test one (protocol, model, seed), with the settings tuning chose if any; returns its json record
    and the rank of each test sample's target as the run's test phase scored it."""
    base, settings = cell_settings(model, protocol, overrides, tuned, seed)
    start = time.time()
    config = Config(base, args.dataset, config_dict=settings)
    if distributed.launch_settings(config) is not None:  # the ranks are recorded in this process (sample_ranks)
        raise SystemExit("the harness runs each model in one process: leave out --nproc and --world_size")
    prepared = prepare_data(config)
    with recording_test_ranks(prepared.test, config) as recorder:
        result = run_recbole_tasrec(base, args.dataset, config_dict=settings, saved=True, prepared=prepared)
    ranks = recorder.ranks()
    for key in ("checkpoint", "continual_checkpoint"):  # the ranks are kept: the models are not needed
        if result.get(key):
            Path(result[key]).unlink(missing_ok=True)
    check = float(metrics_from_ranks(ranks, ["recall@20"])["recall@20"].mean())
    final = config.final_config_dict
    record = {
        "model": model, "seed": seed, "protocol": protocol, "seconds": round(time.time() - start, 1),
        "settings": plain(settings), "information_seen": information_seen(final, get_model(base)),
        "epochs_run": len(result["train_loss"]), "train_loss": result["train_loss"],
        "best_valid_result": result["best_valid_result"], "test_result": result["test_result"],
        "recall@20_from_ranks": check, "config": {k: plain(v) for k, v in final.items()},
    }  # fmt: skip
    return record, ranks


def tune_model(
    model: str, args: argparse.Namespace, overrides: dict[str, Any], folder: Path, protocol: str = DEFAULT_PROTOCOL
) -> dict[str, Any]:
    """``args.tune_trials`` Ray Tune trials of ``model`` over its search space, with the runs' budget, data set and
    protocol; returns the best trial's name, validation result and settings. An ablation keeps its switch."""
    from recbole_tasrec.tune.cli import search_space_file
    from recbole_tasrec.tune.report import summarize
    from recbole_tasrec.tune.space import load_search_space
    from recbole_tasrec.tune.spec import SweepOptions, build_spec
    from recbole_tasrec.tune.sweep import run_sweep

    base, variant = VARIANTS.get(model, (model, {}))
    space = {k: v for k, v in load_search_space(search_space_file("default", base)).items() if k not in variant}
    shared = {k: v for k, v in cell_settings(model, protocol, overrides)[1].items() if k != "show_progress"}
    spec, _ = build_spec(base, args.dataset, space, overrides={k: v for k, v in shared.items() if k not in space})
    run_sweep(spec, folder, SweepOptions(num_samples=args.tune_trials, scheduler="fifo"))
    best = summarize(spec, folder).best
    if best is None:
        raise RuntimeError(f"every tuning trial of {model} failed: see {folder}/results.csv")
    return {"trials": args.tune_trials, "best_trial": best.name, "folder": str(folder),
            "valid": {k: float(v) for k, v in best.valid.items()},
            "settings": {k: plain(v) for k, v in best.params.items()}}  # fmt: skip


def save(paths: dict[str, Path], runs: list[dict], ranks: dict[str, np.ndarray], header: dict) -> None:
    """Write the json and the ranks, each crash-safe: never a half-written result."""
    write_json(paths["json"], {**header, "runs": runs}, indent=1)
    write_npz(paths["ranks"], ranks)


#: the metrics of the paired tests
PAIRED = ("recall@20", "mrr@20")
PART_TITLES = {"weights": "weights", "graph": "graph", "index": "kNN index", "memory": "memory"}


def seed_averaged(ranks: dict[str, np.ndarray], protocol: str, model: str, metric: str) -> np.ndarray:
    """Per-sample ``metric`` of ``model`` under ``protocol``, averaged over its seeds."""
    values = [metrics_from_ranks(r, [metric])[metric] for k, r in ranks.items() if cell_of(k)[:2] == (protocol, model)]
    return np.mean(values, axis=0)


def paired(a: np.ndarray, b: np.ndarray, what: str) -> dict[str, float | int]:
    """Mean of ``a - b`` over the test samples and the paired t-test's p-value (1 where ``a`` and ``b`` are the
    same: there is nothing to test)."""
    if a.shape != b.shape:
        raise RuntimeError(f"{what} were tested on different samples")
    p_value = float(stats.ttest_rel(a, b).pvalue) if (a != b).any() else 1.0
    return {"difference": float(np.mean(a - b)), "p_value": p_value, "samples": int(a.size)}


def seen_by(runs: list[dict]) -> dict[str, str]:
    """What the runs of one model saw at test time, part by part (runs from before protocols existed: from their
    settings)."""
    parts: dict[str, list[str]] = {}
    for run in runs:
        seen = run.get("information_seen") or information_seen(run["config"], get_model(run["config"]["model"]))
        for part, words in seen.items():
            parts.setdefault(part, [])
            if words not in parts[part]:
                parts[part].append(words)
    return {part: " / ".join(words) for part, words in parts.items()}


def summarise_protocol(
    runs: list[dict], ranks: dict[str, np.ndarray], models: list[str], metrics: list[str], protocol: str
) -> dict:
    """One protocol's table: mean and std over seeds of every metric, what each model saw, and TASRec against the
    best other model (paired t-test over test samples of the seed-averaged per-sample metric)."""
    table: dict[str, dict[str, list[float]]] = {}
    seen: dict[str, dict[str, str]] = {}
    for model in models:
        done = [r for r in runs if r["model"] == model and r.get("protocol", DEFAULT_PROTOCOL) == protocol]
        if done:
            table[model] = {m: [float(np.mean(v := [r["test_result"][m] for r in done])), float(np.std(v))]
                            for m in metrics}  # fmt: skip
            table[model]["seeds"] = [len(done), 0.0]
            seen[model] = seen_by(done)
    summary: dict[str, Any] = {"table": table, "information_seen": seen}
    others = [m for m in table if not m.startswith("TASRec")] or [m for m in table if m != "TASRec"]
    if "TASRec" not in table or not others:
        return summary
    best = max(others, key=lambda m: table[m]["recall@20"][0])
    summary["versus"] = {"best_other": best}
    for metric in PAIRED:
        tasrec, other = (seed_averaged(ranks, protocol, m, metric) for m in ("TASRec", best))
        summary["versus"][metric] = paired(tasrec, other, "TASRec and the best other model")
    return summary


def summarise(
    runs: list[dict], ranks: dict[str, np.ndarray], models: list[str], metrics: list[str], protocols: list[str]
) -> dict:
    """Each protocol's table (:func:`summarise_protocol`) and, with two protocols, the second against the first
    for every model run under both (paired t-test over test samples, seed-averaged)."""
    summary: dict[str, Any] = {"protocols": {p: summarise_protocol(runs, ranks, models, metrics, p) for p in protocols}}
    if len(protocols) == 2:
        first, second = protocols
        both = [m for m in models if all(m in summary["protocols"][p]["table"] for p in protocols)]
        summary["between_protocols"] = {"minuend": second, "subtrahend": first, "models": {
            model: {metric: paired(seed_averaged(ranks, second, model, metric),
                                   seed_averaged(ranks, first, model, metric), f"{model} under {second} and {first}")
                    for metric in PAIRED} for model in both}}  # fmt: skip
    return summary


def pvalue_cell(test: dict) -> str:
    return f"{100 * test['difference']:+.2f} pp, p = {test['p_value']:.3g}"


def protocol_lines(protocols: list[str]) -> list[str]:
    """The report's account of each protocol: the keys it sets and what it means."""
    lines = ["What each protocol lets a model know when it scores a test day (each key is set only for the models "
             "that read it; a `--key=value` wins over it):", ""]  # fmt: skip
    for protocol in protocols:
        keys, meaning = PROTOCOLS[protocol]
        lines.append(f"- **{protocol}** (" + ", ".join(f"`{k}: {v}`" for k, v in keys.items()) + f"): {meaning}.")
    return [
        *lines,
        "",
        "The table of what each model saw is read from its runs' settings: where it differs from "
        "the protocol's words, a setting (or a key this version of the package does not implement) decided.",
        "",
    ]


def protocol_section(summary: dict, metrics: list[str], paper: dict[str, list[float]]) -> list[str]:
    """One protocol's table of metrics, its paired test, and what each model saw."""
    names = [m for m in metrics if m != "mrr@20"]
    lines = ["| model | seeds | " + " | ".join(metrics) + (" | paper: " + ", ".join(names) if paper else "") + " |",
             "|---" * (len(metrics) + 2 + bool(paper)) + "|"]  # fmt: skip
    for model, row in summary["table"].items():
        cells = [f"{100 * row[m][0]:.2f} +- {100 * row[m][1]:.2f}" for m in metrics]
        figures = paper.get(model)
        tail = [" ".join(f"{v:.2f}" for v in figures) if figures else "-"] if paper else []
        lines.append(f"| {model} | {row['seeds'][0]} | " + " | ".join(cells + tail) + " |")
    versus = summary.get("versus")
    if versus:
        lines += ["", f"TASRec minus the best other model ({versus['best_other']}), per test sample, seed-averaged, "
                  "paired t-test:", ""]  # fmt: skip
        lines += [f"- {m}: {pvalue_cell(versus[m])} ({versus[m]['samples']} tests)" for m in PAIRED]
    lines += ["", "What each model saw when it scored a test day:", "",
              "| model | " + " | ".join(PART_TITLES.values()) + " |", "|---" * (len(PARTS) + 1) + "|"]  # fmt: skip
    for model, seen in summary["information_seen"].items():
        lines.append(f"| {model} | " + " | ".join(seen.get(part, "-") for part in PARTS) + " |")
    return lines


def markdown(header: dict, summary: dict, metrics: list[str], paper: dict[str, list[float]]) -> str:
    """The report: the protocols, then for each a row a model, mean +- std (%) over seeds, the paper's figures
    beside ours, and what each model saw; with two protocols, the paired test between them for every model."""
    lines = [f"# {header['name']}: test metrics (%), mean +- std over seeds", "",
             f"Command: `{header['command']}`  ", f"Package {header['version']}, commit {header['commit']}; "
             f"equal footing: {header['equal_footing']}", ""]  # fmt: skip
    if header.get("tuning"):
        chosen = [
            f"- {m}: " + ", ".join(f"{k}={v}" for k, v in t["settings"].items()) for m, t in header["tuning"].items()
        ]
        lines += [f"Equal tuning: {header['tune_trials']} Ray Tune trials per model over its search space, "
                  "ranked by validation; the settings chosen:", "", *chosen, ""]  # fmt: skip
    protocols = list(summary["protocols"])
    lines += protocol_lines(protocols)
    for protocol, section in summary["protocols"].items():
        lines += [f"## Protocol {protocol}", "", *protocol_section(section, metrics, paper), ""]
    between = summary.get("between_protocols")
    if between:
        lines += [
            f"## {between['minuend']} minus {between['subtrahend']}, per test sample, seed-averaged, paired t-test",
            "",
            "| model | " + " | ".join(PAIRED) + " |",
            "|---" * (len(PAIRED) + 1) + "|",
        ]
        for model, tests in between["models"].items():
            lines.append(f"| {model} | " + " | ".join(pvalue_cell(tests[m]) for m in PAIRED) + " |")
        lines.append("")
    if paper:
        lines += ["Paper figures: Table 1 (and Table 2), on the paper's full data set, not this one."]
    return "\n".join(lines).rstrip("\n") + "\n"


def chart(path: Path, summary: dict, metrics: list[str], title: str) -> None:
    """Bars of every metric per model (and protocol, when there are several), mean with the seeds' std as error
    bars."""
    several = len(summary["protocols"]) > 1
    sections = summary["protocols"].items()
    table = {(f"{model}\n{protocol}" if several else model): row
             for protocol, section in sections for model, row in section["table"].items()}  # fmt: skip
    models = list(table)
    fig, ax = pyplot().subplots(figsize=(max(6, 1.2 * len(models)), 4))
    width = 0.8 / len(metrics)
    for i, metric in enumerate(metrics):
        means = [100 * table[m][metric][0] for m in models]
        stds = [100 * table[m][metric][1] for m in models]
        ax.bar(np.arange(len(models)) + i * width, means, width, yerr=stds, capsize=2, label=metric)
    ax.set_xticks(np.arange(len(models)) + 0.4 - width / 2, models, rotation=20)
    ax.set_ylabel("% (mean +- std over seeds)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    save_figure(fig, path)


@contextlib.contextmanager
def ray_for_tuning(needed: bool, address: str | None) -> Iterator[None]:
    """Join the cluster at ``address`` (or start a local Ray) for the tuning trials; nothing, not even the
    import of Ray, when no tuning is ``needed``."""
    if not needed:
        yield
        return
    import ray

    from recbole_tasrec.tune.ray_env import init_ray

    started = not ray.is_initialized()
    if started:
        init_ray(address)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def load_results(paths: dict[str, Path]) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The runs and ranks of an earlier harness: only the runs whose ranks were saved with them."""
    runs = json.loads(paths["json"].read_text())["runs"]
    ranks = dict(np.load(paths["ranks"])) if paths["ranks"].exists() else {}
    runs = [r for r in runs if cell_key(r.get("protocol", DEFAULT_PROTOCOL), r["model"], r["seed"]) in ranks]
    return runs, ranks


def cells_to_run(protocols: list[str], models: list[str], seeds: int, ranks: dict[str, np.ndarray]) -> list[tuple]:
    """The ``(protocol, model, seed)`` runs whose ranks are not in ``ranks`` yet, protocol by protocol."""
    cells = [(p, m, s) for p in protocols for m in models for s in range(1, seeds + 1)]
    return [cell for cell in cells if cell_key(*cell) not in ranks]


def main(argv: list[str] | None = None) -> dict:
    args, overrides = parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    protocols = list(BOTH) if args.protocol == "both" else [args.protocol]
    name = args.name or args.dataset
    paths = {ext: args.output_dir / f"{name}.{ext}" for ext in ("json", "md", "png")}
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    paths["ranks"] = args.output_dir / f"{name}.ranks.npz"
    paper_key = (args.paper_dataset or args.dataset).lower()
    metrics = PAPER_METRICS.get(paper_key, DEFAULT_METRICS) + ["mrr@20"]
    runs: list[dict] = []
    ranks: dict[str, np.ndarray] = {}
    if (args.resume or args.report_only) and paths["json"].exists():
        runs, ranks = load_results(paths)
    header = {"name": name, "dataset": args.dataset, "models": models, "seeds": args.seeds, "protocols": protocols,
              "command": f"{COMMAND} " + " ".join(argv or sys.argv[1:]),
              "version": __version__, "commit": source_commit(), "overrides": plain(overrides),
              "equal_footing": {**EQUAL_FOOTING, **plain(overrides)}, "tune_trials": args.tune_trials,
              "tuning": {}}  # fmt: skip
    if args.report_only:
        if not paths["json"].exists():
            raise SystemExit(f"--report-only: no {paths['json']} to report on")
        header = {k: v for k, v in json.loads(paths["json"].read_text()).items() if k not in ("runs", "summary")}
        protocols = header.setdefault("protocols", [DEFAULT_PROTOCOL])
        models = [m for m in header["models"] if any(r["model"] == m for r in runs)]
    elif args.resume and paths["json"].exists():
        header["tuning"] = json.loads(paths["json"].read_text()).get("tuning", {})
    todo = [] if args.report_only else cells_to_run(protocols, models, args.seeds, ranks)
    started = time.time()
    with ray_for_tuning(bool(args.tune_trials and todo), args.tune_address):
        for i, (protocol, model, seed) in enumerate(todo, 1):
            tuning = tuning_key(protocol, model)
            if args.tune_trials and tuning not in header["tuning"]:
                folder = (args.tune_dir or Path("runs", "reproduce", name)) / tuning.replace("|", "-")
                header["tuning"][tuning] = tune_model(model, args, overrides, folder, protocol)
                save(paths, runs, ranks, header)
                print(f"tuned {tuning}: {header['tuning'][tuning]['settings']}", flush=True)
            tuned = header["tuning"].get(tuning, {}).get("settings")
            record, sample_ranks = run_one(model, seed, args, overrides, tuned, protocol)
            runs.append(record)
            ranks[cell_key(protocol, model, seed)] = sample_ranks
            save(paths, runs, ranks, header)
            left = (time.time() - started) / i * (len(todo) - i)
            print(f"run {i}/{len(todo)}: {model} seed {seed} ({protocol}) test recall@20 "
                  f"{record['test_result']['recall@20']:.4f} ({record['seconds']:.0f} s); about {left / 60:.1f} min "
                  "left", flush=True)  # fmt: skip
    summary = summarise(runs, ranks, models, metrics, protocols)
    save(paths, runs, ranks, {**header, "summary": summary})
    write_text(paths["md"], markdown(header, summary, metrics, PAPER.get(paper_key, {})))
    chart(paths["png"], summary, metrics, f"{name}: test metrics over {header['seeds']} seeds")
    print(paths["md"].read_text())
    return summary
