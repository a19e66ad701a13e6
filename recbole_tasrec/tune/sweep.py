"""Ray Tune sweeps over :func:`recbole_tasrec.run_recbole_tasrec`.

RecBole's ``objective_function`` reports once, at the end, with ``tune.report(**kwargs)`` (removed from Ray),
so a scheduler cannot stop a poor trial early. Here each trial reports every evaluation with
``ray.tune.report(metrics)``; the processed data set is built once by the driver and shared with the trials
through Ray's object store (``tune.with_parameters``); each trial writes its RecBole logs and checkpoint in its
own folder of the sweep (RecBole names checkpoints by the second, so shared folders collide).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray._private import ray_constants
from ray.tune.schedulers import ASHAScheduler
from recbole.utils import init_seed
from recbole.utils.argument_list import dataset_arguments

from recbole_tasrec.compat import DATASET_KEYS, set_run_dir
from recbole_tasrec.config import Config, get_model
from recbole_tasrec.quick_start import PreparedData, make_dataloaders, prepare_data, run_recbole_tasrec
from recbole_tasrec.trainer import TASRecTrainer
from recbole_tasrec.tune.space import Param, default_num_samples, parse_space, to_ray

#: Settings a search space must not contain: the sweep sets them (``--max-epochs``, the trial's folder, ...).
RESERVED_KEYS = frozenset(
    {"model", "dataset", "data_path", "epochs", "run_dir", "checkpoint_dir", "show_progress", "gpu_id"}
)
SPEC_FILE = "sweep.json"
#: Trials report validation metrics as ``valid/<metric>`` every epoch and ``test/<metric>`` once, at the end.
VALID_PREFIX, TEST_PREFIX = "valid/", "test/"


class SweepError(ValueError):
    """A sweep that cannot start (bad model, metric, search space, cluster address); the CLI exits with 2."""


@contextlib.contextmanager
def keep_cuda_visible_devices() -> Iterator[None]:
    """Undo RecBole's ``Config._init_device``, which sets ``CUDA_VISIBLE_DEVICES`` from ``gpu_id``.

    In the driver that would hide GPUs from the Ray cluster it starts (and from its workers).
    """
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before


def trial_dirname(trial_id: str) -> str:
    """A trial's folder (and name) in the sweep: short, unique and stable across ``--resume``."""
    return f"trial_{trial_id}"


def _trial_dirname_creator(trial: Any) -> str:
    return trial_dirname(trial.trial_id)


@dataclass
class SweepSpec:
    """What a sweep runs: everything a trial, ``--resume`` and ``best.yaml`` need (saved as ``sweep.json``).

    ``settings`` are the typed RecBole settings shared by all trials (command-line overrides, the absolute
    ``data_path`` and ``epochs``); ``space`` the sampled ones.
    """

    model: str
    dataset: str
    space: dict[str, Param]
    settings: dict[str, Any]
    config_files: list[str]
    metric: str
    bigger: bool
    max_epochs: int

    @property
    def metric_key(self) -> str:
        """The sweep's metric as the trials report it, e.g. ``valid/recall@20`` (RecBole's keys are lower-case)."""
        return VALID_PREFIX + self.metric.lower()

    @property
    def mode(self) -> str:
        return "max" if self.bigger else "min"

    def trial_settings(self, params: dict[str, Any], run_dir: Path, gpu_ids: Sequence[Any] = ()) -> dict[str, Any]:
        """RecBole settings of one trial; ``gpu_ids`` are those Ray gave it (``gpu_id`` makes RecBole set
        ``CUDA_VISIBLE_DEVICES``, so it must name exactly those, or nothing for a CPU trial)."""
        return {
            **self.settings,
            **params,
            "run_dir": str(run_dir),
            "checkpoint_dir": str(run_dir / "saved"),
            "show_progress": False,
            "gpu_id": ",".join(str(i) for i in gpu_ids),
        }

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["space"] = {name: param.to_yaml() for name, param in self.space.items()}
        return json.dumps(data, indent=2, default=str) + "\n"

    @classmethod
    def from_json(cls, text: str) -> SweepSpec:
        data = json.loads(text)
        data["space"] = parse_space(data["space"])
        return cls(**data)


def driver_config(model: str, dataset: str, config_files: list[str], settings: dict[str, Any]) -> Config:
    """The sweep's shared Config, built in the driver on the CPU without touching ``CUDA_VISIBLE_DEVICES``."""
    with keep_cuda_visible_devices():
        return Config(model, dataset, config_files or None, {**settings, "gpu_id": ""})


def check_model(name: str) -> None:
    """Raise :class:`SweepError` unless ``name`` is a model of this package or RecBole."""
    try:
        get_model(name)
    except ValueError:
        raise SweepError(f"unknown model {name!r}: not a recbole_tasrec or RecBole model") from None
    except ImportError as err:  # RecBole's lookup imports its optional xgboost/lightgbm models for unknown names
        raise SweepError(f"unknown model {name!r} (RecBole's model lookup failed: {err})") from None


def _check_metric(config: Config) -> str:
    metric = str(config["valid_metric"])
    _, _, k = metric.partition("@")
    metrics = [m.lower() for m in config["metrics"]]
    known = [f"{m}@{t}" for m in metrics for t in config["topk"]] if k else metrics
    if metric.lower() not in known:
        raise SweepError(
            f"unknown metric {metric!r}: the validation metric must be one that is evaluated "
            f"(metrics {config['metrics']} at topk {config['topk']}), e.g. Recall@20"
        )
    return metric


def _check_space(space: dict[str, Param]) -> None:
    data_keys = set(dataset_arguments) | set(DATASET_KEYS)
    for name in space:
        if name in RESERVED_KEYS:
            raise SweepError(f"search space sets {name!r}, which the sweep sets itself (see --help)")
        if name in data_keys:
            raise SweepError(
                f"search space sets {name!r}, which shapes the data set: all trials share one processed data set, "
                "so sweep it with separate sweeps"
            )


def build_spec(
    model: str,
    dataset: str,
    space: dict[str, Param],
    config_files: Sequence[str] = (),
    overrides: dict[str, Any] | None = None,
    max_epochs: int | None = None,
) -> tuple[SweepSpec, Config]:
    """Check a sweep before any Ray work (model, metric, data, search space) and fix its shared settings.

    Raises:
        SweepError: with a message that says what to change.
    """
    from recbole_tasrec.cli import MissingDataError, check_data

    files = [str(Path(f).resolve()) for f in config_files]
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise SweepError(f"config file not found: {missing[0]}")
    check_model(model)
    _check_space(space)
    overrides = dict(overrides or {})
    try:
        config = driver_config(model, dataset, files, overrides)
        check_data(config["data_path"], dataset)
    except (ValueError, MissingDataError) as err:
        raise SweepError(str(err)) from None
    metric = _check_metric(config)
    epochs = int(max_epochs or config["epochs"])
    if epochs < 1:
        raise SweepError(f"--max-epochs must be at least 1, got {epochs}")
    # typed as the Config read them (command-line strings become numbers, lists, ...), with absolute paths:
    # trials run in their own working directories
    settings = {key: config.final_config_dict[key] for key in overrides}
    # RecBole's config["data_path"] is <data_path>/<dataset>
    settings.update(data_path=str(Path(config["data_path"]).resolve().parent), epochs=epochs)
    spec = SweepSpec(
        model=config["model"],
        dataset=dataset,
        space=space,
        settings=settings,
        config_files=files,
        metric=metric,
        bigger=bool(config["valid_metric_bigger"]),
        max_epochs=epochs,
    )
    return spec, config


# --- Ray ----------------------------------------------------------------------------------------------------
def _check_reachable(address: str) -> None:
    """Fail in seconds, not after Ray's connection retries, when nothing listens at ``host:port``."""
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise SweepError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise SweepError(f"no Ray cluster at {address}: {err.strerror or err}") from None


def init_ray(address: str | None = None, *, num_cpus: int | None = None, verbose: bool = False) -> None:
    """Start a private local Ray (``address=None``) or join a running cluster (``auto``, ``HOST:PORT``,
    ``ray://HOST:PORT``).

    A local Ray never joins a cluster found on the machine (``ray.init()`` would), keeps the dashboard off, sends
    no usage statistics, and, unless token authentication is configured already, gets a fresh token through the
    environment, so that Ray does not write one into the home folder.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs: dict[str, Any] = {"log_to_driver": verbose, "logging_level": "INFO" if verbose else "WARNING"}
    if address is None:
        configured = any(os.environ.get(v) for v in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"))
        if not configured and not (Path.home() / ".ray" / "auth_token").exists():
            os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)  # inherited by the raylet and the workers
        # Ray's own notice that a new local cluster uses token authentication (it does, on purpose)
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        # Under `uv run`, Ray ships the working directory to every worker and starts it with `uv run`, which
        # builds a new virtual environment per Ray session (minutes, gigabytes). A local Ray's workers simply use
        # this interpreter. Ray reads this switch from the environment when it is imported, hence the constant.
        ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = False
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **kwargs)
        return
    if address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        message = " ".join(str(err).split())  # Ray's messages span lines; one line here, shortened
        raise SweepError(f"cannot join the Ray cluster at {address}: {message[:300]}") from None


def check_resources(cpus_per_trial: float, gpus_per_trial: float | None) -> float:
    """The GPUs per trial (default: 1 if the cluster has a GPU, else 0); a trial that asks for more than the
    cluster has would wait forever."""
    available = ray.cluster_resources()
    gpus = available.get("GPU", 0.0)
    if gpus_per_trial is None:
        gpus_per_trial = 1.0 if gpus >= 1 else 0.0
    if gpus_per_trial > gpus:
        raise SweepError(f"--gpus-per-trial {gpus_per_trial:g}, but the Ray cluster has {gpus:g} GPUs")
    if cpus_per_trial > available.get("CPU", 0.0):
        raise SweepError(
            f"--cpus-per-trial {cpus_per_trial:g}, but the Ray cluster has {available.get('CPU', 0.0):g} CPUs"
        )
    return gpus_per_trial


# --- trials ------------------------------------------------------------------------------------------------
def _floats(result: dict[str, Any], prefix: str = "") -> dict[str, float]:
    return {prefix + key: float(value) for key, value in result.items()}


def _trial(params: dict[str, Any], *, spec: SweepSpec, output_dir: str, prepared: PreparedData) -> None:
    """One trial: train with ``params``, report every evaluation, then the test metrics of its best epoch.

    The last report repeats the best validation metrics (Tune checks every report for the sweep's metric; the
    scheduler then sees the last epoch again and changes nothing) and adds ``test/<metric>`` keys.
    """
    context = tune.get_context()
    run_dir = Path(output_dir) / trial_dirname(context.get_trial_id())
    shutil.rmtree(run_dir / "saved", ignore_errors=True)  # a retried or resumed trial starts afresh
    settings = spec.trial_settings(params, run_dir, ray.get_gpu_ids())
    last_epoch = 0

    def report(epoch_idx: int, valid_result: dict[str, float]) -> None:
        nonlocal last_epoch
        last_epoch = epoch_idx + 1
        tune.report({"epoch": last_epoch, **_floats(valid_result, VALID_PREFIX)})

    result = run_recbole_tasrec(
        spec.model, spec.dataset, spec.config_files or None, settings, prepared=prepared, epoch_callback=report
    )
    best, test = _floats(result["best_valid_result"], VALID_PREFIX), _floats(result["test_result"], TEST_PREFIX)
    tune.report({"epoch": last_epoch, **best, **test})


def evaluate_checkpoint(
    spec: SweepSpec, params: dict[str, Any], run_dir: Path, checkpoint: Path, prepared: PreparedData
) -> dict[str, float]:
    """Test metrics of a trial's best checkpoint, computed in the driver on the CPU.

    For a trial that the scheduler stopped (it never reached its own test evaluation) but that is the best
    by validation: what :func:`run_recbole_tasrec` would have reported, i.e. ``evaluate(load_best_model=True)``.
    """
    with keep_cuda_visible_devices():
        config = Config(spec.model, spec.dataset, spec.config_files or None, spec.trial_settings(params, run_dir))
    set_run_dir(run_dir)
    _, _, test_data = make_dataloaders(config, prepared)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    net = get_model(config["model"])(config, prepared.train).to(config["device"])
    trainer = TASRecTrainer(config, net)
    result = trainer.evaluate(test_data, load_best_model=True, model_file=str(checkpoint), show_progress=False)
    trainer.tensorboard.close()
    return _floats(result)


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


def short(value: Any) -> str:
    """A sampled value for a one-line summary (floats to 4 significant digits)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# --- the sweep ------------------------------------------------------------------------------------------------
@dataclass
class SweepOptions:
    """How a sweep runs (not what it computes): sampling, scheduling, resources, retries."""

    num_samples: int | None = None  # None: see space.default_num_samples
    scheduler: str = "asha"
    grace_period: int = 1
    reduction_factor: float = 4
    cpus_per_trial: float = 1
    gpus_per_trial: float | None = None  # None: 1 if the cluster has a GPU, else 0
    max_concurrent: int | None = None
    max_failures: int = 1
    verbose: bool = False


def default_output_dir(config: Config, model: str, dataset: str) -> Path:
    """``<run_dir>/tune/<Model>-<dataset>-<time>``: sweeps land in the run-output folder like every run."""
    return Path(config["run_dir"]).resolve() / "tune" / f"{model}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


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
    (output_dir / SPEC_FILE).write_text(spec.to_json())
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
            callbacks=[TrialSummary(spec)],
            verbose=1 if options.verbose else 0,
        ),
    )
    return tuner.fit()


def load_spec(output_dir: Path) -> SweepSpec:
    """The spec of the sweep in ``output_dir`` (for ``--resume``)."""
    path = Path(output_dir) / SPEC_FILE
    if not path.is_file():
        raise SweepError(f"no sweep to resume in {output_dir}: {SPEC_FILE} is missing")
    return SweepSpec.from_json(path.read_text())
