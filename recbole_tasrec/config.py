"""RecBole's ``Config`` with this package's property files layered in.

Precedence, lowest first (RecBole's own order, with this package's files slotted in after RecBole's):
RecBole's internal defaults < ``properties/overall.yaml`` < ``properties/model/<Model>.yaml`` <
``properties/dataset/<dataset>.yaml`` < the user's ``config_file_list`` < ``config_dict`` < ``cmd_args``.
As in RecBole, a data set's file beats a model's, so a small data set can carry its own training schedule.

Unlike RecBole's ``Config``, this one never reads ``sys.argv`` by itself: pytest and Ray workers carry
their own ``--flags`` there. The command line reaches it explicitly through ``cmd_args``.

Nothing a user writes reaches ``eval``: string values (``--key=value``, ``config_dict``) are read as Python literals
(:func:`recbole_tasrec.settings.parse_value`, where RecBole calls ``eval``) and yaml files with yaml's safe loader
(RecBole's ``FullLoader`` builds Python objects from ``!!python/...`` tags). Every setting of
:mod:`recbole_tasrec.settings` is checked once, when the configuration is built, before any data is read.
"""

from __future__ import annotations

import importlib
import importlib.util
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from recbole.config import Config as RecBoleConfig

from recbole_tasrec import run_folder
from recbole_tasrec import settings as table
from recbole_tasrec.distributed.device import join_process_group

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL, DEFAULT_DATASET = "TASRec", "sample"


def in_checkout() -> bool:
    """True when the package runs from a source checkout (``uv run``, an editable install), not from a wheel."""
    return (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "properties").is_dir()


def default_data_path(data_path: str | None) -> Path:
    """The package's default ``data_path`` (``atomic_data``), made absolute: in a checkout, the checkout's own
    ``atomic_data/`` wherever one runs from; in an installed package, ``./atomic_data`` of the working directory."""
    path = Path(data_path or "atomic_data")
    if path.is_absolute():
        return path
    return (PROJECT_ROOT if in_checkout() else Path.cwd()) / path


def properties_dir() -> Path:
    """``properties/`` of a source checkout, or the copy a wheel carries inside the package."""
    packaged = Path(__file__).resolve().parent / "properties"
    return packaged if packaged.is_dir() else PROJECT_ROOT / "properties"


#: Where model classes are looked up, in order. RecBole's ``exlib_recommender`` (XGBoost, LightGBM wrappers)
#: is left out: RecBole's own ``get_model`` imports it for any unknown name, which fails without lightgbm.
MODEL_PACKAGES = [
    "recbole_tasrec.model",
    "recbole.model.sequential_recommender",
    "recbole.model.general_recommender",
    "recbole.model.context_aware_recommender",
    "recbole.model.knowledge_aware_recommender",
]


def get_model(name: str) -> type:
    """A model class by name: this package's models first (``recbole_tasrec.model.<name>``), then RecBole's."""
    for package in MODEL_PACKAGES if name.isidentifier() else ():
        module_name = f"{package}.{name.lower()}"
        if importlib.util.find_spec(module_name) is not None:
            module = importlib.import_module(module_name)
            if hasattr(module, name):
                return getattr(module, name)
    raise ValueError(f"unknown model {name!r}: use TASRec or a RecBole model name such as SRGNN, GRU4Rec, SASRec")


def parse_overrides(args: Sequence[str]) -> dict[str, str]:
    """``['--epochs=3', ...]`` -> ``{'epochs': '3'}``; :class:`Config` reads the values' types."""
    overrides: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if not key or not sep:
            raise ValueError(f"cannot read {arg!r} as a RecBole setting: write it as --key=value, e.g. --epochs=5")
        if overrides.get(key, value) != value:
            raise ValueError(f"--{key} is given twice with different values")
        overrides[key] = value
    return overrides


def check_types(settings: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Refuse a user setting of RecBole's that :mod:`recbole_tasrec.settings` does not list, when its type differs
    from its default's (RecBole would take it and fail later, deep in torch): text or a flag where the default is a
    number, anything but True/False for a flag. ``None`` passes."""
    for key, value in settings.items():
        default = defaults.get(key)
        if key in table.BY_KEY or value is None or default is None:
            continue
        flag = isinstance(value, bool | np.bool_)
        if isinstance(default, bool) and not flag:
            raise ValueError(f"{key} must be True or False, got {value!r}")
        if (
            isinstance(default, numbers.Real)
            and not isinstance(default, bool)
            and (flag or not isinstance(value, numbers.Real))
        ):
            raise ValueError(f"{key} must be a number like its default {default!r}, got {value!r}")


def check_valid_metric(config: RecBoleConfig) -> None:
    """Refuse a ``valid_metric`` that the run does not compute (RecBole would fail with a KeyError after the first
    epoch): its name must be in ``metrics`` and its ``@k`` in ``topk``."""
    metric, metrics, topk = str(config["valid_metric"]), list(config["metrics"] or ()), list(config["topk"] or ())
    name, _, k = metric.partition("@")
    if name.lower() not in [m.lower() for m in metrics] or (k and (not k.isdigit() or int(k) not in topk)):
        raise ValueError(
            f"unknown metric {metric!r}: the validation metric (valid_metric) must be one that is evaluated "
            f"(metrics {metrics} at topk {topk}), e.g. {metrics[0] if metrics else 'Recall'}@{topk[0] if topk else 20}"
        )


class Config(RecBoleConfig):
    """RecBole ``Config`` that also loads ``properties/{overall,model/<Model>,dataset/<dataset>}.yaml``.

    Args:
        model: a model name (this package's or RecBole's) or class.
        dataset: the data set's name (a folder under ``data_path``).
        config_file_list: the user's yaml files.
        config_dict: settings, e.g. from a sweep.
        cmd_args: ``--key=value`` strings from a command line; they win over everything else.
    """

    def __init__(
        self,
        model: str | type | None = None,
        dataset: str | None = None,
        config_file_list: list[str] | None = None,
        config_dict: dict[str, Any] | None = None,
        cmd_args: Sequence[str] = (),
    ) -> None:
        self._cmd_args = list(cmd_args)
        try:
            super().__init__(model, dataset, config_file_list, config_dict)
        except NotImplementedError as err:  # RecBole's word for an unknown metric, loss or the like
            raise ValueError(
                f"{err}; check the settings' names (RecBole's own metric names: Recall, NDCG, MRR, ...)"
            ) from None
        check_valid_metric(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """An unpickled configuration (a checkpoint's, for ``load_data_and_model``) is checked like a new one, and
        sets numpy's aliases as a new one does: a process that only loads a checkpoint builds no ``Config``, and
        RecBole's metrics still read ``np.float``."""
        self.__dict__.update(state)
        self.compatibility_settings()
        table.check(self.final_config_dict)

    def _build_yaml_loader(self) -> type[yaml.SafeLoader]:
        return table.YamlLoader

    def _convert_config_dict(self, config_dict: dict[str, Any]) -> dict[str, Any]:
        """RecBole's reading of string values, without its ``eval``: :func:`recbole_tasrec.settings.parse_value`."""
        return {key: table.parse_value(key, v) if isinstance(v, str) else v for key, v in config_dict.items()}

    def _get_final_config_dict(self) -> dict[str, Any]:
        """RecBole's merge, checked before RecBole derives anything from it (devices, paths, evaluation)."""
        final = super()._get_final_config_dict()
        check_types(self.external_config_dict, self.internal_config_dict)
        table.check(final)
        return final

    def _load_config_files(self, file_list: list[str] | None) -> dict[str, Any]:
        """RecBole's reader, one file at a time, so that a missing or malformed file is named in one line."""
        settings: dict[str, Any] = {}
        for file in file_list or ():
            try:
                loaded = super()._load_config_files([file])
            except (OSError, yaml.YAMLError, TypeError, ValueError) as err:
                detail = " ".join(str(err).split())
                raise ValueError(
                    f"cannot read the config file {file}: {detail}; it must be a YAML mapping of "
                    "settings, e.g. 'epochs: 5'"
                ) from None
            settings.update(loaded)
        return settings

    def _load_cmd_line(self) -> dict[str, Any]:
        return self._convert_config_dict(parse_overrides(self._cmd_args))

    def _get_model_and_dataset(self, model: Any, dataset: Any) -> tuple[str, type, str]:
        # not given: the user's files or settings may name them (e.g. a sweep's best.yaml), else the defaults
        model = model or self.external_config_dict.get("model") or DEFAULT_MODEL
        dataset = dataset or self.external_config_dict.get("dataset") or DEFAULT_DATASET
        if isinstance(model, str):
            model = get_model(model)
        return super()._get_model_and_dataset(model, dataset)

    def _load_internal_config_dict(self, model: str, model_class: type, dataset: str) -> None:
        super()._load_internal_config_dict(model, model_class, dataset)
        props = properties_dir()
        for path in [
            props / "overall.yaml",
            props / "model" / f"{model}.yaml",
            props / "dataset" / f"{dataset}.yaml",
        ]:
            if path.is_file():
                self._update_internal_config_dict(str(path))
        self.internal_config_dict["data_path"] = str(default_data_path(self.internal_config_dict.get("data_path")))
        # a new list: RecBole's own (recbole.utils.argument_list.dataset_arguments) stays as it is
        dataset_keys = self.parameters["Dataset"]
        self.parameters["Dataset"] = [*dataset_keys, *(k for k in table.DATASET_KEYS if k not in dataset_keys)]

    # --- RecBole extended, not patched (docs/recbole-fixes.md) ---------------------------------------------
    def _set_default_parameters(self) -> None:
        super()._set_default_parameters()
        settings = self.final_config_dict
        settings["checkpoint_dir"] = run_folder.checkpoint_dir(settings, self.external_config_dict)

    def _init_device(self) -> None:
        if not join_process_group(self):
            super()._init_device()
