"""What `continual: daily` does to each model's weights on one log, and which continual rate validation picks.

``run``: for each (model, seed), train once as the harness does (its equal footing and ``--protocol paper`` keys,
so training is the one ``--protocol both`` trains), then score the test split under ``off`` and under each
continual setting ``mode:epochs:rate`` from the same best checkpoint (``rate``: ``ended``, the rate training ended
with, the default; ``xF``, F times that rate; or a number). Recorded per run: epochs, best epoch, optimiser steps,
the rate training ended with; per continual pass the samples, optimiser steps, rate, loss and how far the weights
moved (relative L2 change, and from the best checkpoint); the same for one more epoch over the training samples
from the best checkpoint (a yardstick); every test sample's rank; and the class of every test sample by where its
last transition (last prefix item -> target) occurs before it is scored: a repeat of the last item (``repeat``),
in the training sessions (``train``), only in the validation sessions (``valid``), only in an earlier test day
(``earlier_test``), or nowhere (``none``).
Check: ``off`` and ``daily:1:ended`` reproduce the harness's ``paper`` and ``streaming`` ranks of the same seed.

``replay``: the same test phases from the best checkpoints of saved runs (``--checkpoints A.pth,B.pth``), without
training again, for logs where training takes hours; ``ended`` is then the rate the best epoch trained at, the
last rate a checkpoint holds.

``summary``: a markdown table of each ``run`` output (mean over seeds, paired t-test over test samples of
the seed-averaged Recall@20 against ``off``); ``--against RANKS.npz:PROTOCOL:MODEL`` also compares each variant
with a harness run's model on the same split (for instance streaming STAN).

    OMP_NUM_THREADS=1 uv run python -m benchmarks.continual_study run --models TASRec,LESSR \
        --seeds 3 --variants refit:1:ended,daily:1:ended --output OUT.json --data_path=/tmp/digi_h/data
    OMP_NUM_THREADS=1 uv run python -m benchmarks.continual_study replay --checkpoints RUN.pth \
        --variants daily:1:ended --output OUT.json
    uv run python -m benchmarks.continual_study summary OUT.json [MORE.json ...]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from recbole.utils import init_seed
from scipy import stats

from recbole_tasrec import continual
from recbole_tasrec.config import Config, parse_overrides
from recbole_tasrec.harness.reproduce import cell_of, cell_settings, metrics_from_ranks, paired, seed_averaged
from recbole_tasrec.harness.sample_ranks import recording_test_ranks
from recbole_tasrec.quick_start import PreparedData, build_model, load_data_and_model, make_dataloaders, prepare_data
from recbole_tasrec.safe_write import write_bytes

CLASSES = ("repeat", "train", "valid", "earlier_test", "none")


def flat(model: torch.nn.Module) -> torch.Tensor:
    """Every parameter of ``model`` in one float64 vector."""
    return torch.cat([p.detach().reshape(-1).double().cpu() for p in model.parameters()])


def transitions(part: Any, config: Any) -> np.ndarray:
    """``(N, 2)``: each sample's last prefix item and target."""
    feat = part.inter_feat
    items = feat[config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]].long()
    last = items[torch.arange(len(items)), feat[config["ITEM_LIST_LENGTH_FIELD"]].long() - 1]
    return np.stack([last.numpy(), feat[config["ITEM_ID_FIELD"]].long().numpy()], 1)


def transition_classes(prepared: Any, config: Any) -> tuple[np.ndarray, np.ndarray]:
    """Each test sample's class (:data:`CLASSES`, the first that holds; ``repeat``: the target is the last prefix
    item, a transition the temporal graph never holds) and its day."""
    train = {tuple(t) for t in transitions(prepared.train, config).tolist()}
    valid = {tuple(t) for t in transitions(prepared.valid, config).tolist()}
    test = [tuple(t) for t in transitions(prepared.test, config).tolist()]
    days = prepared.test.inter_feat[prepared.dataset.day_field].long().numpy()
    first_day: dict[tuple[int, int], int] = {}  # the first test day each transition occurs on
    for pair, day in zip(test, days.tolist(), strict=True):
        first_day[pair] = min(day, first_day.get(pair, day))
    kind = []
    for pair, day in zip(test, days.tolist(), strict=True):
        seen_in = (pair[0] == pair[1], pair in train, pair in valid, first_day[pair] < day, True)
        kind.append(next(c for c, seen in zip(CLASSES, seen_in, strict=True) if seen))
    return np.array(kind), days


class Probe(continual.ContinualTester):
    """The continual tester, recording what each training pass did to the weights. ``ended``: the rate training
    ended with by each optimiser group, which a scaled continual rate multiplies (every probe of a trainer starts
    from it, not from the constant rate the probe before it left in the optimiser)."""

    def __init__(self, trainer: Any, prepared: Any, settings: continual.ContinualSettings, ended: list[float]) -> None:
        super().__init__(trainer, prepared, settings)
        self.ended = ended
        self.passes: list[dict[str, Any]] = []
        self.best = torch.zeros(0)

    def start_from_best(self, saved: bool) -> None:
        for group, rate in zip(self.trainer.optimizer.param_groups, self.ended, strict=True):
            group["lr"] = rate
        super().start_from_best(saved)
        self.best = flat(self.trainer.model)

    def train_on(self, part: Any, what: str) -> float:
        before, steps = flat(self.trainer.model), self.trainer.optimizer_steps
        loss = super().train_on(part, what)
        after = flat(self.trainer.model)
        self.passes.append({
            "what": what, "samples": len(part), "steps": int(self.trainer.optimizer_steps - steps),
            "lr": self.trainer.learning_rates[0], "loss": loss,
            "move_rel": float((after - before).norm() / before.norm()),
            "move_from_best_rel": float((after - self.best).norm() / self.best.norm()),
        })  # fmt: skip
        return loss


def continual_of(spec: str) -> continual.ContinualSettings:
    """``mode:epochs:rate``, the rate ``ended`` (the rate training ended with), ``xF`` (F times it) or a number."""
    mode, epochs, rate = spec.split(":")
    if rate == "ended" or rate.startswith("x"):
        return continual.ContinualSettings(mode, int(epochs), None, 1.0 if rate == "ended" else float(rate[1:]))
    return continual.ContinualSettings(mode, int(epochs), float(rate))


def run_cell(model: str, seed: int, dataset: str, overrides: dict[str, Any], variants: list[str]) -> dict[str, Any]:
    """One (model, seed): train once, then the test phase under ``off`` and each variant (module docstring)."""
    from recbole_tasrec.trainer import ScheduledTrainer

    base, settings = cell_settings(model, "paper", overrides, None, seed)
    start = time.time()
    config = Config(base, dataset, config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    prepared = prepare_data(config)
    train_data, valid_data, test_data = make_dataloaders(config, prepared)
    trainer = ScheduledTrainer(config, build_model(config, prepared.train))
    trainer.fit_with_callback(train_data, valid_data, saved=True)
    record = {"model": model, "seed": seed, "epochs_run": len(trainer.train_loss_dict),
              "train_steps": int(trainer.optimizer_steps), "batches_per_epoch": len(train_data)}  # fmt: skip
    record |= score_variants(trainer, prepared, test_data, trainer.learning_rates, variants)
    record["seconds"] = round(time.time() - start, 1)
    return record


def replay_cell(checkpoint: str, variants: list[str]) -> dict[str, Any]:
    """The test phase of a saved run (its best checkpoint) under ``off`` and each variant, without training it
    again: for logs where training takes hours. ``ended`` is the rate the best epoch trained at (the checkpoint
    holds no later rate)."""
    from recbole_tasrec.trainer import ScheduledTrainer

    start = time.time()
    config, model, dataset, train_data, valid_data, test_data = load_data_and_model(checkpoint)
    prepared = PreparedData(dataset, train_data._dataset, valid_data._dataset, test_data._dataset)  # the split it read
    trainer = ScheduledTrainer(config, model)
    trainer.saved_model_file = checkpoint
    saved = continual.load_trusted(checkpoint, ("optimizer",))
    ended = [float(group["lr"]) for group in saved["optimizer"]["param_groups"]]
    record = {"model": config["model"], "seed": config["seed"], "checkpoint": checkpoint,
              "batches_per_epoch": len(train_data)}  # fmt: skip
    record |= score_variants(trainer, prepared, test_data, ended, variants)
    record["seconds"] = round(time.time() - start, 1)
    return record


def score_variants(
    trainer: Any, prepared: Any, test_data: Any, ended: list[float], variants: list[str]
) -> dict[str, Any]:
    """From the trainer's best checkpoint: the test ranks under ``off`` and each variant, one more training epoch
    as a yardstick, and what each sample's last transition is (:func:`transition_classes`)."""
    config = trainer.config
    kind, days = transition_classes(prepared, config)
    record: dict[str, Any] = {
        "best_epoch": int(continual.load_trusted(trainer.saved_model_file, ("epoch",))["epoch"]),
        "lr_ended": ended[0], "learner": config["learner"], "n_train": len(prepared.train),
        "n_valid": len(prepared.valid), "n_test": len(prepared.test),
        "test_days": {int(d): int((days == d).sum()) for d in np.unique(days)},
        "classes": {c: int((kind == c).sum()) for c in CLASSES}, "kind": kind.tolist(), "variants": {},
    }  # fmt: skip
    with recording_test_ranks(prepared.test, config) as recorder:
        trainer.evaluate(test_data, load_best_model=True)
    record["variants"]["off"] = {"ranks": recorder.ranks().tolist()}
    yardstick = Probe(trainer, prepared, continual.ContinualSettings("refit", 1, None), ended)
    yardstick.start_from_best(True)
    yardstick.train_on(prepared.train, "the training samples (yardstick)")
    record["yardstick"] = yardstick.passes[0]
    for spec in variants:
        probe = Probe(trainer, prepared, continual_of(spec), ended)
        with recording_test_ranks(prepared.test, config) as recorder:
            phase = probe.run(True)
        record["variants"][spec] = {"ranks": recorder.ranks().tolist(), "passes": probe.passes,
                                    "recall@20": float(phase.test_result["recall@20"])}  # fmt: skip
    return record


def run(args: argparse.Namespace, rest: list[str]) -> None:
    overrides = parse_overrides(rest)  # text: Config reads each value as the runner does
    variants = args.variants.split(",")
    if args.command == "replay":
        cells = ((replay_cell, (checkpoint, variants)) for checkpoint in args.checkpoints.split(","))
    else:
        seeds = range(1, args.seeds + 1)
        cells = ((run_cell, (m, s, args.dataset, overrides, variants)) for m in args.models.split(",") for s in seeds)
    records = []
    for cell, cell_args in cells:
        records.append(cell(*cell_args))
        done = {k: round(float((np.array(v["ranks"]) <= 20).mean()), 4) for k, v in records[-1]["variants"].items()}
        print(records[-1]["model"], records[-1]["seed"], done, flush=True)
        body = {"command": " ".join(sys.argv), "overrides": overrides, "records": records}
        write_output(args.output, body)


def write_output(name: str, body: dict[str, Any]) -> None:
    """The json of a run; gzip-compressed when ``name`` ends in ``.gz`` (a large log's ranks: 3.6 MB of json for
    Tmall's 62,976 test samples, 0.5 MB compressed)."""
    data = json.dumps(body, indent=1).encode()
    write_bytes(name, gzip.compress(data, mtime=0) if name.endswith(".gz") else data)


def read_records(name: str) -> list[dict[str, Any]]:
    """The records of a ``run`` or ``replay`` output, compressed or not."""
    data = Path(name).read_bytes()
    return json.loads(gzip.decompress(data) if name.endswith(".gz") else data)["records"]


def seed_hits(runs: list[dict[str, Any]], spec: str) -> np.ndarray:
    """Each test sample's Recall@20 under ``spec``, averaged over the runs (seeds)."""
    return np.mean([np.array(r["variants"][spec]["ranks"]) <= 20 for r in runs], 0)


def by_model(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The records of each model, in the order they were run."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        grouped[record["model"]].append(record)
    return grouped


def summary_lines(records: list[dict[str, Any]]) -> list[str]:
    """Per model: training, and per variant Recall@20, its gain over ``off`` with the paired p-value, steps, rate,
    weight movement, and the seed-averaged hits by transition class."""
    lines = [
        "| model | variant | Recall@20 | gain over off (pp, p) | rate | steps (valid; each test day) | weights moved "
        "(valid pass; whole phase) | hits by class: " + " / ".join(CLASSES) + " |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, runs in by_model(records).items():
        kind = np.array(runs[0]["kind"])
        sizes = " / ".join(str(int((kind == c).sum())) for c in CLASSES)
        off = seed_hits(runs, "off")
        for spec in runs[0]["variants"]:
            hit = seed_hits(runs, spec)
            by_class = " / ".join(f"{hit[kind == c].sum():.2f}" for c in CLASSES) + f" (of {sizes})"
            if spec == "off":
                what = (f"epochs {[r.get('epochs_run', '-') for r in runs]}, best {[r['best_epoch'] for r in runs]}, "
                        f"{runs[0]['batches_per_epoch']} steps/epoch")  # fmt: skip
                move = np.mean([r["yardstick"]["move_rel"] for r in runs])
                lines.append(f"| {model} ({len(runs)} seeds) | off | {100 * hit.mean():.2f} | {what} | "
                             f"{runs[0]['lr_ended']:.3g} (ended) | - | one more training epoch: {100 * move:.2f} % | "
                             f"{by_class} |")  # fmt: skip
                continue
            test = paired(hit, off, f"{model}'s variants")
            passes = runs[0]["variants"][spec]["passes"]
            steps = f"{passes[0]['steps']}; " + (", ".join(str(x["steps"]) for x in passes[1:]) or "-")
            first = np.mean([r["variants"][spec]["passes"][0]["move_rel"] for r in runs])
            whole = np.mean([r["variants"][spec]["passes"][-1]["move_from_best_rel"] for r in runs])
            gain = f"{100 * test['difference']:+.2f}, {p_text(test['p_value'])}"
            lines.append(f"| {model} | {spec} | {100 * hit.mean():.2f} | {gain} | {passes[0]['lr']:.3g} | {steps} | "
                         f"{100 * first:.2f} %; {100 * whole:.2f} % | {by_class} |")  # fmt: skip
    return lines


def against_lines(records: list[dict[str, Any]], against: str) -> list[str]:
    """Per model and variant, Recall@20 and MRR@20 minus those of a harness run's model on the same split
    (``against``: ``RANKS.npz:PROTOCOL:MODEL``, e.g. streaming STAN), seed-averaged per sample, paired t-tests."""
    ranks_file, protocol, other = against.rsplit(":", 2)
    with np.load(ranks_file) as loaded:
        harness_ranks = dict(loaded)
    if not any(cell_of(key)[:2] == (protocol, other) for key in harness_ranks):
        cells = sorted({":".join(cell_of(key)[:2]) for key in harness_ranks})
        raise SystemExit(f"--against: {ranks_file} has no {protocol} run of {other} (it has {', '.join(cells)})")
    lines = [
        f"| model | variant | minus {other} ({protocol}): Recall@20 (pp, p) | MRR@20 (pp, p) |",
        "|---|---|---|---|",
    ]
    for model, runs in by_model(records).items():
        for spec in runs[0]["variants"]:
            cells = []
            for metric in ("recall@20", "mrr@20"):
                ours = np.mean([metrics_from_ranks(np.array(r["variants"][spec]["ranks"]), [metric])[metric]
                                for r in runs], 0)  # fmt: skip
                test = paired(ours, seed_averaged(harness_ranks, protocol, other, metric), f"{model} and {other}")
                cells.append(f"{100 * test['difference']:+.2f}, {p_text(test['p_value'])}")
            lines.append(f"| {model} | {spec} | " + " | ".join(cells) + " |")
    return lines


def p_text(p: float) -> str:
    """``p = ...``; a p-value that underflows to 0 reads as below the smallest double."""
    return f"p = {p:.2g}" if p > 0 else "p < 1e-300"


def pooled_lines(files: list[str]) -> list[str]:
    """Per model and variant, the gain over ``off`` pooled over the test samples of every file (each file's seeds
    averaged per sample first): one paired t-test over all of them."""
    gains: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    for name in files:
        for model, runs in by_model(read_records(name)).items():
            off = seed_hits(runs, "off")
            for spec in runs[0]["variants"]:
                gains[model, spec].append(seed_hits(runs, spec) - off)
    lines = ["| model | variant | test samples | gain over off (pp) | p |", "|---|---|---|---|---|"]
    for (model, spec), parts in gains.items():
        if spec == "off":
            continue
        gain = np.concatenate(parts)
        p = float(stats.ttest_1samp(gain, 0.0).pvalue) if gain.any() else 1.0
        lines.append(f"| {model} | {spec} | {gain.size} | {100 * gain.mean():+.2f} | {p:.2g} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="train and score (module docstring); any --key=value: a setting")
    run_parser.add_argument("--models", default="TASRec,LESSR,CSRM")
    run_parser.add_argument("--seeds", type=int, default=3)
    run_parser.add_argument("--dataset", default="diginetica")
    run_parser.add_argument("--variants", default="refit:1:ended,daily:1:ended")
    run_parser.add_argument("--output", required=True)
    replay_parser = commands.add_parser("replay", help="score saved runs' checkpoints (module docstring)")
    replay_parser.add_argument("--checkpoints", required=True, help="comma-separated best checkpoints")
    replay_parser.add_argument("--variants", default="refit:1:ended,daily:1:ended")
    replay_parser.add_argument("--output", required=True)
    summary_parser = commands.add_parser("summary", help="markdown tables of run outputs, and their pooled gains")
    summary_parser.add_argument("files", nargs="+")
    summary_parser.add_argument(
        "--against", metavar="RANKS.npz:PROTOCOL:MODEL", help="also compare each variant with a harness run's model"
    )
    args, rest = parser.parse_known_args(argv)
    if args.command in ("run", "replay"):
        if args.command == "replay" and rest:
            parser.error(f"replay takes a saved run's own settings; unrecognised: {' '.join(rest)}")
        run(args, rest)
        return 0
    against_file = args.against.rsplit(":", 2)[0] if args.against else None
    if missing := [name for name in [*args.files, against_file] if name is not None and not Path(name).is_file()]:
        parser.error(f"no such file: {', '.join(missing)} (give outputs of run or replay, and a harness .ranks.npz)")
    for name in args.files:
        print(f"`{name}`\n")
        print("\n".join(summary_lines(read_records(name))) + "\n")
        if args.against:
            print("\n".join(against_lines(read_records(name), args.against)) + "\n")
    if len(args.files) > 1:
        print("Pooled over the files' test samples:\n")
        print("\n".join(pooled_lines(args.files)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
