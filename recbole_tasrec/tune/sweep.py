"""Ray Tune sweeps over :func:`recbole_tasrec.run_recbole_tasrec`.

RecBole's ``objective_function`` reports once, at the end, with ``tune.report(**kwargs)`` (removed from Ray),
so a scheduler cannot stop a poor trial early. Here each trial reports every evaluation with
``ray.tune.report(metrics)``; the processed data set is built once by the driver and shared with the trials
through Ray's object store (``tune.with_parameters``); each trial writes its RecBole logs and checkpoint in its
own folder of the sweep (RecBole names checkpoints by the second, so shared folders collide). Each report carries
a Tune checkpoint (the trial's resume state and best model, :mod:`recbole_tasrec.resume`), so a retried trial or
a resumed sweep continues a trial after its last finished epoch instead of training it again from epoch 1.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from recbole_tasrec.checkpoint import load_trusted
from recbole_tasrec.quick_start import PreparedData, evaluate_checkpoint, prepare_data, run_recbole_tasrec
from recbole_tasrec.resume import RESUME_SUFFIX
from recbole_tasrec.safe_write import write_text
from recbole_tasrec.tune.ray_env import check_resources
from recbole_tasrec.tune.space import default_num_samples, to_ray
from recbole_tasrec.tune.spec import (
    SPEC_FILE,
    TEST_PREFIX,
    VALID_PREFIX,
    SweepError,
    SweepOptions,
    SweepSpec,
    driver_config,
    short,
    trial_dirname,
)


def _trial_dirname_creator(trial: Any) -> str:
    return trial_dirname(trial.trial_id)


# --- trials ------------------------------------------------------------------------------------------------
def _floats(result: dict[str, Any], prefix: str = "") -> dict[str, float]:
    return {prefix + key: float(value) for key, value in result.items()}


def _restore_saved(saved_dir: Path) -> Path | None:
    """Refill ``saved_dir`` from the trial's last Tune checkpoint; its resume state, or None for a fresh start."""
    shutil.rmtree(saved_dir, ignore_errors=True)  # files of an attempt that did not reach its next report
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        shutil.copytree(folder, saved_dir)
    return next(saved_dir.glob(f"*{RESUME_SUFFIX}"), None)


def _report_with_checkpoint(metrics: dict[str, Any], saved_dir: Path) -> None:
    """``tune.report`` with the trial's resume state and best model (written before the epoch callback)."""
    with tempfile.TemporaryDirectory() as folder:
        for path in saved_dir.iterdir():
            if path.is_file() and not path.name.startswith("."):
                shutil.copy2(path, folder)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _trial(params: dict[str, Any], *, spec: SweepSpec, output_dir: str, prepared: PreparedData) -> None:
    """One trial: train with ``params``, report every evaluation, then the test metrics of its best epoch.

    The last report repeats the best validation metrics (Tune checks every report for the sweep's metric; the
    scheduler then sees the last epoch again and changes nothing) and adds ``test/<metric>`` keys. A trial with
    a Tune checkpoint (retried, or its sweep resumed) continues after the checkpoint's epoch.
    """
    context = tune.get_context()
    run_dir = Path(output_dir) / trial_dirname(context.get_trial_id())
    resume_file = _restore_saved(run_dir / "saved")
    settings = spec.trial_settings(params, run_dir, ray.get_gpu_ids())
    last_epoch = 0 if resume_file is None else load_trusted(resume_file)["epoch"] + 1

    def report(epoch_idx: int, valid_result: dict[str, float]) -> None:
        nonlocal last_epoch
        last_epoch = epoch_idx + 1
        _report_with_checkpoint({"epoch": last_epoch, **_floats(valid_result, VALID_PREFIX)}, run_dir / "saved")

    result = run_recbole_tasrec(
        spec.model,
        spec.dataset,
        spec.config_files or None,
        settings,
        prepared=prepared,
        epoch_callback=report,
        resume=resume_file,
    )
    best, test = _floats(result["best_valid_result"], VALID_PREFIX), _floats(result["test_result"], TEST_PREFIX)
    tune.report({"epoch": last_epoch, **best, **test})


def evaluate_trial_checkpoint(
    spec: SweepSpec, params: dict[str, Any], run_dir: Path, checkpoint: Path, prepared: PreparedData
) -> dict[str, float]:
    """Test metrics of a trial's best checkpoint, computed in the driver on the CPU.

    For a trial that the scheduler stopped (it never reached its own test evaluation) but that is the best
    by validation: what :func:`run_recbole_tasrec` would have reported, i.e. ``evaluate(load_best_model=True)``.
    """
    config = driver_config(spec.model, spec.dataset, spec.config_files, spec.trial_settings(params, run_dir))
    return _floats(evaluate_checkpoint(config, prepared, checkpoint))


class TrialSummary(tune.Callback):
    """Prints one line per finished, stopped, retried or failed trial, as the sweep goes."""

    def __init__(self, spec: SweepSpec) -> None:
        self.spec = spec

    def _line(self, trial: Any, status: str) -> str:
        result = trial.last_result or {}
        params = " ".join(
            f"{key}={short(value)}" for key, value in trial.config.items() if self.spec.space[key].kind != "fixed"
        )
        metric = result.get(self.spec.metric_key)
        score = f"{self.spec.metric_key}={metric:.4f} " if metric is not None else ""
        epochs = f"epoch {result['epoch']}/{self.spec.max_epochs} " if "epoch" in result else ""
        return f"[{trial_dirname(trial.trial_id)}] {status:<8} {score}{epochs}{params}".rstrip()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        done = any(key.startswith(TEST_PREFIX) for key in trial.last_result or {})
        print(self._line(trial, "done" if done else "stopped"), flush=True)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(self._line(trial, "retrying"), flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(self._line(trial, "error") + f" (see {trial.path}/error.txt)", flush=True)


# --- the sweep ------------------------------------------------------------------------------------------------
def make_scheduler(spec: SweepSpec, options: SweepOptions) -> Any:
    """ASHA over epochs, with its last rung before the last epoch: stopping a trial there would save no
    training, only skip its test run. None (FIFO) when no rung fits."""
    last_rung = spec.max_epochs - 1
    if options.scheduler == "fifo" or options.grace_period > last_rung:
        return None
    return ASHAScheduler(
        time_attr="epoch",
        max_t=last_rung,
        grace_period=options.grace_period,
        reduction_factor=options.reduction_factor,
        stop_last_trials=False,  # a trial past the last rung runs to its end (and its test run)
    )


def run_sweep(
    spec: SweepSpec,
    output_dir: Path,
    options: SweepOptions,
    *,
    resume: bool = False,
    prepared: PreparedData | None = None,
    scheduler: Any = None,
) -> Any:
    """Run (or, with ``resume``, continue) a sweep in ``output_dir`` on the Ray that :func:`init_ray` joined.

    Args:
        spec: what to run (see :func:`build_spec`); written to ``output_dir/sweep.json``.
        options: sampling, scheduler, resources and retries.
        prepared: the processed data set, if the caller has it (else built here, once).
        scheduler: a Tune scheduler that replaces ``options.scheduler`` (tests, custom policies).

    Returns:
        Tune's ``ResultGrid``.
    """
    output_dir = Path(output_dir).resolve()
    gpus_per_trial = check_resources(options.cpus_per_trial, options.gpus_per_trial)
    if prepared is None:
        prepared = prepare_data(driver_config(spec.model, spec.dataset, spec.config_files, spec.settings))
    trainable = tune.with_resources(
        tune.with_parameters(_trial, spec=spec, output_dir=str(output_dir), prepared=prepared),
        {"cpu": options.cpus_per_trial, "gpu": gpus_per_trial},
    )
    if resume:
        if not tune.Tuner.can_restore(str(output_dir)):
            raise SweepError(f"no sweep to resume in {output_dir}")
        return tune.Tuner.restore(str(output_dir), trainable=trainable, resume_unfinished=True).fit()
    output_dir.mkdir(parents=True, exist_ok=True)
    write_text(output_dir / SPEC_FILE, spec.to_json())
    num_samples = options.num_samples or default_num_samples(spec.space)
    tuner = tune.Tuner(
        trainable,
        param_space=to_ray(spec.space),
        tune_config=tune.TuneConfig(
            metric=spec.metric_key,
            mode=spec.mode,
            num_samples=num_samples,
            max_concurrent_trials=options.max_concurrent,
            scheduler=scheduler if scheduler is not None else make_scheduler(spec, options),
            trial_name_creator=_trial_dirname_creator,
            trial_dirname_creator=_trial_dirname_creator,
            reuse_actors=True,  # a new trial in a finished trial's worker skips importing torch and RecBole again
        ),
        run_config=tune.RunConfig(
            name=output_dir.name,
            storage_path=str(output_dir.parent),
            failure_config=tune.FailureConfig(max_failures=options.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # a trial resumes from its last epoch only
            callbacks=[TrialSummary(spec)],
            verbose=1 if options.verbose else 0,
        ),
    )
    return tuner.fit()
