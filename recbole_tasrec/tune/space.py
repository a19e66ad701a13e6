"""Search spaces: ``properties/hyper/<Model>.yaml`` (this package's format) and RecBole's hyper files.

This package's format is a yaml mapping, one setting per key; a setting's value is either a plain value (fixed
for every trial) or a one-key mapping naming a distribution::

    embedding_size: {grid: [50, 100, 150, 200]}   # every value, crossed with the other grids
    n_layers: {choice: [1, 2, 3]}                  # one value drawn at random per trial
    dropout_prob: {uniform: [0.0, 0.5]}
    learning_rate: {loguniform: [1.0e-4, 1.0e-2]}  # the bounds themselves (Ray's meaning)
    step: {randint: [1, 4]}                        # integers 1..3: the upper bound is excluded, as in Ray
    decay: {quniform: [0.3, 0.9, 0.1]}             # uniform, rounded to a multiple of 0.1
    train_batch_size: 128                          # fixed

RecBole's own hyper files (``run_hyper.py --params_file``) are read too, one setting per line::

    learning_rate loguniform -8,0      # natural logs of the bounds: exp(-8) .. exp(0)
    embedding_size choice [64,96,128]
    dropout_prob uniform 0.1,0.5
    decay quniform 0.3,0.9,0.1

The parsed space is plain data (:class:`Param`), so it is checked and written back without Ray;
:func:`to_ray` turns it into Tune's ``param_space``.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from recbole_tasrec.settings import YamlLoader

#: The distributions of this package's format, with the number of arguments each takes (None: a list).
KINDS: dict[str, int | None] = {
    "choice": None,
    "grid": None,
    "uniform": 2,
    "quniform": 3,
    "loguniform": 2,
    "randint": 2,
}


class SearchSpaceError(ValueError):
    """A search-space file or entry that cannot be read; the message names the file and the setting."""


@dataclass(frozen=True)
class Param:
    """One setting of a search space: ``kind`` is a key of :data:`KINDS` or ``"fixed"``."""

    kind: str
    args: tuple[Any, ...]

    def to_ray(self) -> Any:
        """The Tune domain (or plain value) for ``param_space``."""
        from ray import tune

        if self.kind == "fixed":
            return self.args[0]
        if self.kind == "grid":
            return tune.grid_search(list(self.args))
        if self.kind == "choice":
            return tune.choice(list(self.args))
        return getattr(tune, self.kind)(*self.args)

    def to_yaml(self) -> Any:
        """This package's yaml form of the setting (what :func:`parse_space` reads back)."""
        return self.args[0] if self.kind == "fixed" else {self.kind: list(self.args)}


def load_yaml(path: str | Path) -> Any:
    """A yaml file read with RecBole's number rules (``1e-4`` is a float)."""
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=YamlLoader)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SearchSpaceError(f"{where}: {value!r} is not a number")
    return value


def make_param(name: str, kind: str, args: Any, where: str = "") -> Param:
    """Check one distribution and return it; ``where`` prefixes error messages (file name)."""
    where = f"{where}{name}"
    if kind not in KINDS:
        raise SearchSpaceError(f"{where}: unknown distribution {kind!r}; use one of {', '.join(KINDS)}")
    if not isinstance(args, list | tuple):
        raise SearchSpaceError(f"{where}: {kind} takes a list, got {args!r}")
    arity = KINDS[kind]
    if arity is None:
        if not args:
            raise SearchSpaceError(f"{where}: {kind} needs at least one value")
        return Param(kind, tuple(args))
    if len(args) != arity:
        raise SearchSpaceError(f"{where}: {kind} takes {arity} numbers, got {list(args)!r}")
    low, high = (_number(v, where) for v in args[:2])
    if not low < high:
        raise SearchSpaceError(f"{where}: {kind} needs low < high, got {low} and {high}")
    if kind == "loguniform" and low <= 0:
        raise SearchSpaceError(f"{where}: loguniform bounds must be > 0 (Ray's meaning, not logs), got {low}")
    if kind == "randint" and not all(isinstance(v, int) and not isinstance(v, bool) for v in args):
        raise SearchSpaceError(f"{where}: randint takes two integers, got {list(args)!r}")
    if kind == "quniform" and not _number(args[2], where) > 0:
        raise SearchSpaceError(f"{where}: quniform's step must be > 0, got {args[2]}")
    return Param(kind, tuple(args))


def parse_space(data: Any, where: str = "") -> dict[str, Param]:
    """This package's format, already loaded from yaml, to ``{setting: Param}``."""
    if not isinstance(data, dict) or not data:
        raise SearchSpaceError(f"{where or 'search space'}: expected a mapping of settings, got {data!r}")
    space = {}
    for name, value in data.items():
        if isinstance(value, dict):
            if len(value) != 1:
                raise SearchSpaceError(
                    f"{where}{name}: a distribution is a one-key mapping like {{choice: [1, 2]}}, got {value!r} "
                    "(fixed mapping-valued settings belong in --config_files)"
                )
            ((kind, args),) = value.items()
            space[name] = make_param(name, kind, args, where)
        else:
            space[name] = Param("fixed", (value,))
    return space


def parse_recbole_space(text: str, where: str = "") -> dict[str, Param]:
    """RecBole's hyper-file lines (``name kind value``) to ``{setting: Param}``.

    As in RecBole's ``run_hyper.py``, ``loguniform a,b`` gives natural logs of the bounds; ``choice`` takes a
    Python literal list (read with ``ast.literal_eval``, never ``eval``). Blank lines and ``#`` comments are
    skipped.
    """
    space = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        at = f"{where}line {number}: "
        if len(parts) < 3:
            raise SearchSpaceError(f"{at}expected 'name kind value', got {line!r}")
        name, kind, value = parts
        if kind == "choice":
            try:
                values = ast.literal_eval(value)
            except (ValueError, SyntaxError) as err:
                raise SearchSpaceError(f"{at}{name}: cannot read {value!r} as a list ({err})") from None
            space[name] = make_param(name, "choice", values, at)
            continue
        if kind not in ("uniform", "quniform", "loguniform"):
            raise SearchSpaceError(
                f"{at}{name}: unknown kind {kind!r}; RecBole's are choice, uniform, quniform, loguniform"
            )
        try:
            bounds = [float(v) for v in value.split(",")]
        except ValueError:
            raise SearchSpaceError(f"{at}{name}: cannot read {value!r} as comma-separated numbers") from None
        if kind == "loguniform" and len(bounds) == 2:
            bounds = [math.exp(b) for b in bounds]
        space[name] = make_param(name, kind, bounds, at)
    if not space:
        raise SearchSpaceError(f"{where or 'search space'}: no settings found")
    return space


def load_search_space(path: str | Path) -> dict[str, Param]:
    """Read a search-space file in either format (a yaml mapping is this package's; lines are RecBole's)."""
    path = Path(path)
    where = f"{path}: "
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SearchSpaceError(f"cannot read search space {path}: {err.strerror}") from None
    try:
        data = yaml.load(text, Loader=YamlLoader)
    except yaml.YAMLError:
        data = None  # RecBole's lines (e.g. "x choice [1,2]" in a list) need not be valid yaml
    if isinstance(data, dict):
        return parse_space(data, where)
    return parse_recbole_space(text, where)


def default_num_samples(space: dict[str, Param]) -> int:
    """10 trials for a space that samples at random; 1 for a grid (it runs once) or fixed values only."""
    return 10 if any(param.kind not in ("grid", "fixed") for param in space.values()) else 1


def to_ray(space: dict[str, Param]) -> dict[str, Any]:
    """Tune's ``param_space`` for ``space``."""
    return {name: param.to_ray() for name, param in space.items()}
