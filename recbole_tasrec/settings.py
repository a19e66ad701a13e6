"""One table of the settings this package adds to RecBole or constrains: key, type and allowed values, default, meaning.

:class:`~recbole_tasrec.config.Config` reads it twice: to parse a ``--key=value`` or ``config_dict`` string (text
settings stay text; the others are read as Python literals, never with ``eval``: :func:`parse_value`), and to check
every value once, when the configuration is built (:func:`check`), for every entry point, before any data is read.
A wrong value fails with one line naming the key and what it accepts. RecBole's own keys that are not in the table
are checked against their default's type only (``config.check_types``).

The defaults live in ``properties/*.yaml``, which RecBole layers (overall < model < data set < user); a row's
``default`` is the value in its ``home`` file (``overall`` or a model's file) and ``tests/test_settings.py`` asserts
that the two agree, that every other yaml value of a key is one the row accepts, and that every key of this
package's yaml files has a row. Code reads ``config[key]`` and never repeats a default.

Adding a setting: one row below (one line; ``_data`` for a key that shapes the processed data set, ``_in(home)``
for a key documented in a model's yaml) and its line, with the same default, in that yaml file.

This module imports neither torch nor RecBole nor any model or data-set module.
"""

from __future__ import annotations

import ast
import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import yaml


def _is_flag(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy's bool, without importing numpy


def _is_whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not _is_flag(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not _is_flag(value) and math.isfinite(value)


# --- what a setting accepts --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Whole:
    """A whole number ``least <= n <= most`` (``True`` and ``2.0`` refused)."""

    least: int
    most: int | None = None

    def accepts(self, value: Any) -> bool:
        return _is_whole(value) and self.least <= value and (self.most is None or value <= self.most)

    def describe(self) -> str:
        return f"a whole number >= {self.least}" + ("" if self.most is None else f" and <= {self.most}")


@dataclass(frozen=True)
class Number:
    """A finite real number within the bounds given (``above``/``below`` exclude the bound, ``at_*`` include it)."""

    above: float | None = None
    at_least: float | None = None
    below: float | None = None
    at_most: float | None = None

    def accepts(self, value: Any) -> bool:
        return _is_number(value) and not (
            (self.above is not None and value <= self.above)
            or (self.at_least is not None and value < self.at_least)
            or (self.below is not None and value >= self.below)
            or (self.at_most is not None and value > self.at_most)
        )

    def describe(self) -> str:
        bounds = [(">", self.above), (">=", self.at_least), ("<", self.below), ("<=", self.at_most)]
        limits = " and ".join(f"{op} {bound:g}" for op, bound in bounds if bound is not None)
        return f"a number {limits}" if limits else "a number"


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of words."""

    choices: tuple[str, ...]

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.choices

    def describe(self) -> str:
        return f"one of {', '.join(self.choices)}"


@dataclass(frozen=True)
class Flag:
    def accepts(self, value: Any) -> bool:
        return _is_flag(value)

    def describe(self) -> str:
        return "True or False"


@dataclass(frozen=True)
class Text:
    """Text such as a path or a field name, taken as written from a command line (``2024/12`` stays text)."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value != ""

    def describe(self) -> str:
        return "non-empty text"


@dataclass(frozen=True)
class ListOf:
    item: Number

    def accepts(self, value: Any) -> bool:
        return isinstance(value, list | tuple) and all(self.item.accepts(v) for v in value)

    def describe(self) -> str:
        return f"a list of numbers{self.item.describe().removeprefix('a number')}"


@dataclass(frozen=True)
class OrNone:
    """``~`` (None) or what ``item`` accepts."""

    item: Whole | Number

    def accepts(self, value: Any) -> bool:
        return value is None or self.item.accepts(value)

    def describe(self) -> str:
        return f"{self.item.describe()}, or ~ (none)"


@dataclass(frozen=True)
class HoursOrZone:
    """Hours ``-24 < h < 24`` (a number) or the name of an IANA time zone that :mod:`zoneinfo` finds (text)."""

    def accepts(self, value: Any) -> bool:
        if isinstance(value, str):
            try:
                ZoneInfo(value)
            except (KeyError, ValueError, OSError):  # unknown name, a path outside the zone database, a folder
                return False
            return True
        return _is_number(value) and -24 < value < 24

    def describe(self) -> str:
        return "a number of hours > -24 and < 24, or an IANA time zone name such as Europe/Amsterdam"


Allowed = Whole | Number | OneOf | Flag | Text | ListOf | OrNone | HoursOrZone


@dataclass(frozen=True)
class Setting:
    """One row: ``home`` is the yaml file holding the default (``overall``, a model's name, or ``None`` for a value
    derived at run time); ``shapes_data``: the processed data set depends on it (RecBole's ``dataset_arguments``)."""

    key: str
    allowed: Allowed
    default: Any
    meaning: str
    home: str | None = "overall"
    shapes_data: bool = False


_data = partial(Setting, shapes_data=True)


def _in(home: str) -> Callable[..., Setting]:
    return partial(Setting, home=home)


_tasrec, _csrm, _lessr, _sknn, _stan, _vsknn = map(_in, ("TASRec", "CSRM", "LESSR", "SKNN", "STAN", "VSKNN"))
_FRESHNESS = OneOf(("streaming", "frozen"))
_WEIGHTINGS = OneOf(("same", "div", "linear", "quadratic", "log"))

# fmt: off
#: Every setting this package adds or constrains, one per line (see the module docstring for how to add one).
SETTINGS: tuple[Setting, ...] = (
    # where things are (properties/overall.yaml)
    Setting("data_path", Text(), "atomic_data/", "folder of the atomic data sets (relative: checkout or working dir)"),
    Setting("run_dir", Text(), "runs", "everything a run writes: log/, log_tensorboard/, saved/"),
    Setting("checkpoint_dir", Text(), "<run_dir>/saved", "where checkpoints go", home=None),
    Setting("show_progress", Flag(), True, "progress bars during training and evaluation"),
    # the data and the paper's protocol
    _data("DAY_FIELD", Text(), "day", "field TASRecDataset adds: the day index of the sample's session"),
    _data("MAX_ITEM_LIST_LENGTH", Whole(1), 20, "prefix length fed to every model (the last clicks)"),
    _data("day_span", Whole(1), 1, "calendar days per day of the temporal graph (their midnight: day_start)"),
    _data("day_start", HoursOrZone(), 0, "days begin this many hours after midnight UTC, or at a zone's midnight"),
    _data("min_session_length", Whole(1), 2, "sessions shorter than this are dropped (before and after the items)"),
    _data("min_item_clicks", Whole(0), 5, "items with fewer clicks are dropped (one pass, SR-GNN's order)"),
    _data("test_day_ratio", Number(above=0, below=1), 0.16666666666666666, "share of the last days that test"),
    _data("valid_session_ratio", Number(above=0, below=1), 0.2, "share of the last training sessions that validate"),
    _data("drop_unseen_targets", Flag(), True, "drop valid/test samples whose target never occurs in training"),
    # training and its learning-rate schedule (recbole_tasrec/trainer.py)
    Setting("epochs", Whole(1), 30, "training epochs at most"),
    Setting("train_batch_size", Whole(1), 128, "training samples per batch (the paper's 128)"),
    Setting("eval_batch_size", Whole(1), 1024, "evaluation samples per batch"),
    Setting("learning_rate", Number(above=0), 0.001, "Adam's initial learning rate"),
    Setting("lr_scheduler", OneOf(("plateau", "paper", "constant")), "plateau", "how the learning rate decays"),
    Setting("lr_decay_gamma", Number(above=0, below=1), 0.1, "factor of each decay"),
    Setting("lr_patience", Whole(1), 1, "plateau: evaluations without improvement before a decay"),
    Setting("lr_decay_min_steps", Whole(0), 1000, "plateau: no decay before this many optimiser steps"),
    Setting("lr_restore_best", Flag(), True, "plateau: a decay first restores the best evaluation's weights"),
    Setting("min_lr", Number(at_least=0), 0.0, "plateau and paper: the rate never decays below this"),
    Setting("lr_decay_epochs", Whole(1), 2, "paper: epochs between decays"),
    Setting("stopping_step", Whole(0), 5, "stop after stopping_step + 1 evaluations without improvement"),
    Setting("eval_step", Whole(0), 1, "epochs between validations (0: none)"),
    # continual training (recbole_tasrec/continual.py); YAML reads a bare off as False: the default is quoted
    Setting("continual", OneOf(("off", "refit", "daily")), "off", "train on validation, then each scored test day"),
    Setting("continual_epochs", Whole(1), 1, "continual: passes over the validation samples and each test day"),
    Setting("continual_learning_rate", OrNone(Number(above=0)), None, "continual's constant rate; ~: training's last"),
    Setting("continual_learning_rate_scale", Number(above=0), 1.0, "continual_learning_rate ~: training's last x this"),
    Setting("eval_item_chunk", Whole(0), 0, "full-sort evaluation scores this many items at a time (0: all)"),
    # several processes (recbole_tasrec/distributed/ checks them against each other and torchrun's variables)
    Setting("nproc", Whole(1), 1, "processes on this machine"),
    Setting("world_size", Whole(-1), -1, "processes on all machines; -1: nproc"),
    Setting("ip", Text(), "localhost", "address of the machine that runs global rank 0"),
    Setting("port", Whole(1, 65535), 5678, "a free TCP port on that machine"),
    Setting("offset", Whole(0), 0, "global rank of this machine's first process"),
    # TASRec (properties/model/TASRec.yaml)
    _tasrec("embedding_size", Whole(1), 100, "d: item embeddings and hidden states"),
    _tasrec("step", Whole(1), 1, "propagation steps of the intra-session gated GNN"),
    _tasrec("n_layers", Whole(1), 2, "K: temporal GCN layers (Eq. 2-3)"),
    _tasrec("use_session_graph", Flag(), True, "False: TASRec-temp (paper Table 2)"),
    _tasrec("session_edge_weight", OneOf(("count", "binary")), "count", "session graph edges: counts or 0/1"),
    _tasrec("use_temporal_graph", Flag(), True, "False: TASRec-base (paper Table 2)"),
    _tasrec("decay", Number(above=0, at_most=1), 0.5, "E_t+1 = E(day t) + decay * E_t (Eq. 1)"),
    _tasrec("edge_weight", OneOf(("binary", "count")), "binary", "a day's edges: 0/1 (Eq. 1) or counts"),
    _tasrec("temporal_window", Whole(1), 1, "link each click to the next w clicks of its session"),
    _tasrec("neighbor_threshold", Number(at_least=0), 1.0, "only neighbours with e_ij >= this are used"),
    _tasrec("max_neighbors", OrNone(Whole(1)), None, "training's temporal GCN samples this many neighbours; ~: all"),
    _tasrec("prune_below", Number(at_least=0, at_most=1), 2**-16, "decayed weights below this are dropped"),
    _tasrec("leaky_relu_slope", Number(), 0.2, "negative slope of Eq. 2's LeakyReLU"),
    _tasrec("temporal_eval", _FRESHNESS, "streaming", "the graph keeps advancing through the test days, or stops"),
    _tasrec("dropout_prob", Number(at_least=0, below=1), 0.2, "dropout on z (Eq. 5)"),
    _tasrec("weight_decay", Number(at_least=0), 1e-05, "L2 regularisation (Adam's weight decay)"),
    _tasrec("train_day_order", OneOf(("shuffle", "chronological")), "shuffle", "order of the training days"),
    _tasrec("num_negatives", Whole(1), 1024, "loss_type: sampled: shared negatives per batch"),
    _tasrec("lazy_adam", Flag(), False, "loss_type: sampled: Adam updates only the item rows a step touched"),
    _tasrec("negative_power", Number(at_least=0, at_most=1), 0.75, "loss_type: sampled: q ~ (count + 1)^power"),
    # the baselines (properties/model/<Model>.yaml)
    _csrm("hidden_size", Whole(1), 150, "H: GRU encoders and memory rows"),
    _csrm("memory_size", Whole(1), 10000, "m: the most recent session representations kept"),
    _csrm("memory_eval", _FRESHNESS, "streaming", "evaluated batches are written to the memory, or not"),
    _csrm("dropout_probs", ListOf(Number(at_least=0, below=1)), [0.25, 0.5], "dropout rates (CSRM: embeddings, fused)"),
    _lessr("num_layers", Whole(1), 3, "graph layers (EOPA, SGAT, EOPA, ...)"),
    _lessr("embedding_max_norm", OrNone(Number(above=0)), 1.0, "item embedding rows renormalised to this norm"),
    _sknn("k", Whole(1), 100, "neighbours read (kNN: sessions; CSRM: memory rows)"),
    _sknn("sample_size", Whole(1), 1000, "only the most recent sessions sharing an item are compared"),
    _sknn("knn_streaming", Flag(), True, "a sample of day t may use every session of days < t, or training only"),
    _stan("lambda_1", Number(above=0), 1.02, "position decay of the current session's items"),
    _stan("lambda_2", Number(above=0), 5.0, "recency decay of a neighbour, in calendar days"),
    _stan("lambda_3", Number(above=0), 2.05, "decay of a neighbour's items by distance from the shared one"),
    _stan("item_anchor", OneOf(("last_shared", "most_recent")), "last_shared", "lambda_3's anchor item"),
    _vsknn("weighting", _WEIGHTINGS, "div", "weight of a current-session click by its position"),
    _vsknn("weighting_score", _WEIGHTINGS, "div", "decay of a neighbour's scores by clicks since shared"),
    _vsknn("idf_weighting", Number(at_least=0), 0.0, "score factor 1 + idf_weighting * ln(N / c(i))"),
)
# fmt: on

BY_KEY: dict[str, Setting] = {row.key: row for row in SETTINGS}
#: The keys the processed data set depends on: RecBole's saved-dataset cache and the sweeps treat them like
#: RecBole's own ``dataset_arguments``.
DATASET_KEYS: tuple[str, ...] = tuple(row.key for row in SETTINGS if row.shapes_data)


# --- settings that depend on each other ----------------------------------------------------------------------------
def _schedule_leaves_room(values: Mapping[str, Any]) -> str | None:
    patience, stopping = values.get("lr_patience"), values.get("stopping_step")
    if values.get("lr_scheduler") == "plateau" and None not in (patience, stopping) and patience >= stopping:
        return (
            f"lr_patience={patience} must be smaller than stopping_step={stopping}, or "
            "training stops before the lower rate gets a chance; raise stopping_step or lower lr_patience"
        )
    return None


def _one_view_at_least(values: Mapping[str, Any]) -> str | None:
    if values.get("use_session_graph") is False and values.get("use_temporal_graph") is False:
        return "use_session_graph and use_temporal_graph cannot both be False"
    return None


def _one_continual_rate(values: Mapping[str, Any]) -> str | None:
    rate, scale = values.get("continual_learning_rate"), values.get("continual_learning_rate_scale")
    if rate is not None and scale not in (None, 1, 1.0):
        return (
            f"continual_learning_rate={rate} and continual_learning_rate_scale={scale} both set the continual rate: "
            "give an absolute rate or a multiple of the rate training ended with, not both"
        )
    return None


#: Checks across settings, each returning what is wrong (or None); they run after every row has passed.
RULES: tuple[Callable[[Mapping[str, Any]], str | None], ...] = (
    _schedule_leaves_room,
    _one_view_at_least,
    _one_continual_rate,
)


def check(values: Mapping[str, Any]) -> None:
    """Refuse the first value the table does not accept, naming the key and what it accepts; then :data:`RULES`.
    Keys absent from ``values`` are skipped (a model's keys are only there when that model runs)."""
    for row in SETTINGS:
        if row.key in values and not row.allowed.accepts(values[row.key]):
            raise ValueError(f"{row.key} must be {row.allowed.describe()}, got {values[row.key]!r}")
    for rule in RULES:
        problem = rule(values)
        if problem:
            raise ValueError(problem)


# --- reading values -----------------------------------------------------------------------------------------------
_LITERAL_TYPES = (str, int, float, list, tuple, dict, bool, type(None))


def parse_value(key: str, text: str) -> Any:
    """A setting's value given as text (``--key=value``, a ``config_dict`` string), as RecBole reads it but without
    ``eval``: a text setting of the table as written; else a Python literal (number, list, dict, tuple, True, False,
    None), ``true``/``false`` in any case, or the text itself (``2024/12`` and ``__import__('os')`` stay text)."""
    row = BY_KEY.get(key)
    if row is not None and isinstance(row.allowed, Text):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return {"true": True, "false": False}.get(text.strip().lower(), text)
    return value if isinstance(value, _LITERAL_TYPES) else text


class YamlLoader(yaml.SafeLoader):
    """yaml's safe loader (plain values only: no ``!!python/...`` object) that also reads ``1e-4`` as a float, as
    RecBole's loader does (recbole/config/configurator.py, ``_build_yaml_loader``)."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)
