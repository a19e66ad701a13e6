"""What a sweep runs, checked before any Ray work: :class:`SweepSpec`, :func:`build_spec` and their errors.

No Ray here: the command line imports this module to check its arguments, so ``--help`` and usage errors are instant.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recbole.utils.argument_list import dataset_arguments

from recbole_tasrec.config import Config, get_model
from recbole_tasrec.data.sources import MissingDataError, check_data
from recbole_tasrec.settings import DATASET_KEYS
from recbole_tasrec.tune.space import Param, parse_space

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
    metric = str(config["valid_metric"])  # one that is evaluated: Config checks it
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


def load_spec(output_dir: Path) -> SweepSpec:
    """The spec of the sweep in ``output_dir`` (for ``--resume``)."""
    path = Path(output_dir) / SPEC_FILE
    if not path.is_file():
        raise SweepError(f"no sweep to resume in {output_dir}: {SPEC_FILE} is missing")
    return SweepSpec.from_json(path.read_text())


def short(value: Any) -> str:
    """A sampled value for a one-line summary (floats to 4 significant digits)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
