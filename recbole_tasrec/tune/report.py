"""What a finished sweep leaves in its folder: ``results.csv``, ``best.yaml``, ``valid_curves.png``, each written
atomically (a temporary name, then a rename), so an interrupted sweep never leaves a half-written report.

The best trial is chosen by its best validation score (the epoch RecBole checkpointed), never by test metrics;
its test metrics are the ones its own run computed, or, for a trial the scheduler stopped before its test run,
those of its best checkpoint evaluated afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from ray import tune
from ray.tune.experiment import Trial

from recbole_tasrec.quick_start import PreparedData, prepare_data
from recbole_tasrec.safe_write import atomic_path, write_text
from recbole_tasrec.tune.space import load_yaml
from recbole_tasrec.tune.spec import TEST_PREFIX, VALID_PREFIX, SweepSpec, driver_config, short
from recbole_tasrec.tune.sweep import evaluate_trial_checkpoint

RESULTS_FILE, BEST_FILE, PLOT_FILE = "results.csv", "best.yaml", "valid_curves.png"


def _plain(value: Any) -> Any:
    """numpy scalars (Ray's samples) as Python values, so that yaml and csv write them plainly."""
    return value.item() if hasattr(value, "item") else value


@dataclass
class TrialRecord:
    """One trial of a sweep. ``status``: ``done`` (trained and tested), ``stopped`` (by the scheduler),
    ``error`` (failed after its retries), ``unfinished`` (the sweep was interrupted: ``--resume`` runs it)."""

    name: str
    status: str
    params: dict[str, Any]
    path: Path
    curve: list[tuple[int, float]] = field(default_factory=list)  # (epoch, validation metric)
    best_epoch: int | None = None
    valid: dict[str, float] = field(default_factory=dict)  # every validation metric at the best epoch
    test: dict[str, float] = field(default_factory=dict)
    error: str = ""

    @property
    def checkpoint(self) -> Path | None:
        """The trial's best checkpoint (each attempt starts with an empty ``saved/``, so there is one)."""
        return next(iter(sorted((self.path / "saved").glob("*.pth"))), None)


def _error_line(trial_dir: Path) -> str:
    """The original exception's last line (``ValueError: ...``) from Tune's ``error.txt``, not its traceback."""
    path = trial_dir / "error.txt"
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    return lines[-1] if lines else "failed (no error.txt)"


def collect(output_dir: Path, spec: SweepSpec) -> list[TrialRecord]:
    """The trials of the sweep in ``output_dir`` as :class:`TrialRecord`s, read from Tune's experiment state (so
    that an interrupted sweep shows which trials are unfinished)."""
    analysis = tune.ExperimentAnalysis(str(output_dir))
    records = []
    for trial in analysis.trials:
        path = Path(trial.path)
        status = {Trial.TERMINATED: "stopped", Trial.ERROR: "error"}.get(trial.status, "unfinished")
        params = {key: _plain(value) for key, value in trial.config.items()}
        record = TrialRecord(path.name, status, params, path, error=_error_line(path) if status == "error" else "")
        frame = analysis.trial_dataframes.get(trial.trial_id)
        if frame is not None and spec.metric_key in frame:
            test_columns = [c for c in frame.columns if c.startswith(TEST_PREFIX)]
            final = frame[test_columns].notna().any(axis=1) if test_columns else pd.Series(False, frame.index)
            epochs = frame[~final & frame[spec.metric_key].notna()]
            record.curve = [(int(e), float(v)) for e, v in zip(epochs["epoch"], epochs[spec.metric_key], strict=True)]
            if len(epochs):
                scores = epochs[spec.metric_key].iloc[::-1]  # ties: the later epoch, as RecBole's early_stopping
                best = epochs.loc[scores.idxmax() if spec.bigger else scores.idxmin()]
                record.best_epoch = int(best["epoch"])
                record.valid = {c: float(best[c]) for c in frame.columns if c.startswith(VALID_PREFIX)}
            if final.any() and status == "stopped":  # it reached its own test run: it finished
                record.status = "done"
                record.test = {c: float(frame.loc[final, c].iloc[-1]) for c in test_columns}
        records.append(record)
    return records


def rank(records: list[TrialRecord], spec: SweepSpec) -> list[TrialRecord]:
    """Best validation score first; trials without one (failed before any evaluation) last."""

    def key(record: TrialRecord) -> tuple[bool, float, str]:
        score = record.valid.get(spec.metric_key, math.nan)
        missing = math.isnan(score)
        return missing, 0.0 if missing else (-score if spec.bigger else score), record.name

    return sorted(records, key=key)


def results_table(records: list[TrialRecord], spec: SweepSpec) -> pd.DataFrame:
    """One row per trial, ranked: status, epochs run, best epoch, sampled values, validation metrics at the best
    epoch, test metrics, checkpoint and error."""
    sampled = [name for name, param in spec.space.items() if param.kind != "fixed"]
    rows = []
    for record in records:
        row: dict[str, Any] = {
            "trial": record.name,
            "status": record.status,
            "epochs": len(record.curve),
            "best_epoch": record.best_epoch,
        }
        row.update({name: record.params.get(name) for name in sampled})
        row.update(record.valid)
        row.update(record.test)
        row.update(checkpoint=str(record.checkpoint or ""), error=record.error)
        rows.append(row)
    return pd.DataFrame(rows)


def best_config(spec: SweepSpec, record: TrialRecord) -> dict[str, Any]:
    """A self-contained RecBole config of the trial: model, data set, the sweep's config files and fixed
    settings, then the trial's sampled values."""
    config: dict[str, Any] = {"model": spec.model, "dataset": spec.dataset}
    for path in spec.config_files:
        config.update(load_yaml(path) or {})
    config.update(spec.settings)
    config.update(record.params)
    return {key: _plain(value) for key, value in config.items()}


def _metrics_line(metrics: dict[str, float], prefix: str) -> str:
    return " ".join(f"{key.removeprefix(prefix)}={value:.4f}" for key, value in metrics.items())


def write_best_yaml(path: Path, spec: SweepSpec, record: TrialRecord) -> None:
    """``best.yaml``, with comments that say where it comes from and how to reproduce it."""
    score = record.valid[spec.metric_key]
    header = [
        f"Best trial of the sweep in {path.parent}: {record.name}",
        f"validation {spec.metric} = {score:.4f} at epoch {record.best_epoch} of {spec.max_epochs}",
        f"test (best checkpoint): {_metrics_line(record.test, TEST_PREFIX) or 'not available'}",
        f"Reproduce: uv run python run_recbole_tasrec.py --config_files {path}",
    ]
    body = yaml.safe_dump(best_config(spec, record), sort_keys=False)
    write_text(path, "".join(f"# {line}\n" for line in header) + body)


def plot_curves(path: Path, records: list[TrialRecord], spec: SweepSpec) -> None:
    """``valid_curves.png``: the validation metric per epoch of every trial (dashed: stopped early)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    best = next((r for r in records if r.curve), None)
    for record in records:
        if not record.curve:
            continue
        epochs, values = zip(*record.curve, strict=True)
        axes.plot(
            epochs,
            values,
            marker="o",
            linestyle="--" if record.status == "stopped" else "-",
            linewidth=2.5 if record is best else 1.2,
            label=f"{record.name} ({record.status})",
        )
    axes.set_xlabel("epoch")
    axes.set_ylabel(f"validation {spec.metric}")
    axes.set_title(f"{spec.model} on {spec.dataset}: validation {spec.metric} per epoch")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.grid(alpha=0.3)
    if best is not None:
        axes.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120)


@dataclass
class SweepReport:
    """A finished sweep: its ranked trials, the best one (None if every trial failed) and its files."""

    output_dir: Path
    records: list[TrialRecord]
    table: pd.DataFrame
    best: TrialRecord | None

    @property
    def unfinished(self) -> int:
        """Trials that an interrupted sweep did not finish."""
        return sum(record.status == "unfinished" for record in self.records)

    @property
    def files(self) -> list[Path]:
        return [self.output_dir / name for name in (RESULTS_FILE, BEST_FILE, PLOT_FILE)]


def summarize(spec: SweepSpec, output_dir: Path, prepared: PreparedData | None = None) -> SweepReport:
    """Rank the sweep's trials, complete the best one's test metrics if the scheduler stopped it, write the
    files (for an interrupted sweep too: they then cover the trials finished so far)."""
    output_dir = Path(output_dir)
    records = rank(collect(output_dir, spec), spec)
    best = next((r for r in records if spec.metric_key in r.valid), None)
    if best is not None and not best.test and best.checkpoint is not None:
        if prepared is None:
            prepared = prepare_data(driver_config(spec.model, spec.dataset, spec.config_files, spec.settings))
        test = evaluate_trial_checkpoint(spec, best.params, best.path, best.checkpoint, prepared)
        best.test = {TEST_PREFIX + key: value for key, value in test.items()}
    table = results_table(records, spec)
    write_text(output_dir / RESULTS_FILE, table.to_csv(index=False))
    plot_curves(output_dir / PLOT_FILE, records, spec)
    if best is not None:
        write_best_yaml(output_dir / BEST_FILE, spec, best)
    return SweepReport(output_dir, records, table, best)


def format_report(report: SweepReport, spec: SweepSpec) -> str:
    """The CLI's closing text: the ranked table, the best configuration and its test metrics, the files."""
    counts = pd.Series([r.status for r in report.records]).value_counts()
    summary = ", ".join(f"{counts[s]} {s}" for s in ("done", "stopped", "error", "unfinished") if s in counts)
    columns = ["trial", "status", "epochs", "best_epoch"]
    columns += [name for name, param in spec.space.items() if param.kind != "fixed"] + [spec.metric_key]
    table = report.table.reindex(columns=columns).to_string(index=False, float_format=lambda v: f"{v:.4g}")
    lines = [f"\n{len(report.records)} trials ({summary}), ranked by validation {spec.metric}:", table, ""]
    best = report.best
    if best is None:
        lines.append("no trial produced a validation result; see the error column of results.csv")
    else:
        sampled = " ".join(f"{k}={short(v)}" for k, v in best.params.items() if spec.space[k].kind != "fixed")
        lines += [
            f"best: {best.name} ({sampled}): validation {spec.metric} = {best.valid[spec.metric_key]:.4f} "
            f"at epoch {best.best_epoch}",
            f"test metrics of the best configuration: {_metrics_line(best.test, TEST_PREFIX) or 'not available'}",
        ]
    lines.append(f"wrote {', '.join(str(p) for p in report.files if p.exists())}")
    if report.unfinished:
        lines.append(
            f"the sweep was interrupted with {report.unfinished} trials unfinished; continue it with: "
            f"python -m recbole_tasrec.tune --resume --output-dir {report.output_dir}"
        )
    return "\n".join(lines)
