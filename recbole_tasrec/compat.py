"""The few RecBole 1.2.1 fixes that must be module-level, and nothing else (``docs/recbole-fixes.md``).

RecBole 1.2.1 is the last release. Most of what breaks on numpy 2, pandas 3 and torch >= 2.6 is fixed by
overriding methods in this package's own classes (:class:`~recbole_tasrec.config.Config`,
:class:`~recbole_tasrec.data.dataset.DaySplitDataset`, :class:`~recbole_tasrec.trainer.ScheduledTrainer`), as
RecBole-GNN does. What stays here breaks RecBole for any script, with no seam a subclass could use:

=============================================  ============================================================
RecBole attribute replaced (:data:`REPLACED`)  why it cannot be an override
=============================================  ============================================================
``Config.compatibility_settings``              every ``Config()`` raises on numpy 2 (configurator.py:630)
``recbole.trainer.trainer.torch``              ``torch.load`` of RecBole's own checkpoints fails on torch
                                               >= 2.6 (trainer.py:323, 583), inside ``evaluate``
``recbole.data.dataset.dataset.pd``            an empty ``token_seq``/``float_seq`` value crashes the read
                                               (dataset.py:501-505), in the middle of ``_load_feat``
=============================================  ============================================================

RecBole's ``load_data_and_model`` imports torch inside the function (quick_start.py:248), so only replacing
the function itself could fix its ``torch.load``: it is left as it is (:func:`recbole_tasrec.load_data_and_model`
is this package's). Besides those three attributes: anomaly detection, which importing RecBole's models switches
on for the whole process (sine.py:25), is switched back off; deprecation warnings that only RecBole's own lines
trigger (pandas' ``inplace``, ``torch.cuda.amp``) are filtered for RecBole's modules only.

:func:`install` (run by ``import recbole_tasrec``) imports nothing heavy: each fix is applied when its RecBole
module is first imported (at once if it already is), so the converters stay light to import. Every fix names
the upstream line it answers and has a test in ``tests/test_compat.py`` that fails without it.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import warnings
from collections.abc import Callable
from typing import Any

#: ``(module, attribute)`` of every RecBole attribute this module replaces.
REPLACED = (
    ("recbole.config.configurator", "Config.compatibility_settings"),
    ("recbole.trainer.trainer", "torch"),
    ("recbole.data.dataset.dataset", "pd"),
)
#: The replaced upstream values, by ``"module:attribute"`` (the tests show that they fail).
UPSTREAM: dict[str, Any] = {}


def numpy_aliases(_config: Any = None) -> None:
    """Replacement for ``Config.compatibility_settings`` (recbole/config/configurator.py:625-635).

    Upstream assigns ``np.float = np.float_`` and friends; numpy 2 removed ``np.float_``, ``np.complex_`` and
    ``np.unicode_``, so every ``Config()`` raised. RecBole still uses ``np.float`` (evaluator/metrics.py:90,
    data/dataset/dataset.py:652, data/interaction.py:31), so it and ``np.int`` get their numpy 1 meaning
    (``np.bool`` and ``np.long`` exist in numpy 2).
    """
    import numpy as np

    for name, value in {"float": np.float64, "int": np.int_}.items():
        if name not in np.__dict__:
            setattr(np, name, value)


class TrustedTorchLoad:
    """``torch`` as one RecBole module sees it: ``torch.load(..., weights_only=False)`` by default.

    torch 2.6 made ``weights_only=True`` the default; RecBole's checkpoints pickle its ``Config``, so
    ``evaluate(load_best_model=True)`` (trainer/trainer.py:583) and resuming (trainer.py:323) fail. Those lines
    load the checkpoints RecBole
    wrote itself, or the file its user named. This package's own trainer loads through
    :func:`recbole_tasrec.checkpoint.load_trusted` instead.
    """

    def __getattr__(self, name: str) -> Any:
        import torch

        return getattr(torch, name)

    @staticmethod
    def load(f: Any, *args: Any, **kwargs: Any) -> Any:
        import torch

        kwargs.setdefault("weights_only", False)
        return torch.load(f, *args, **kwargs)


class PandasReadingEmptySequences:
    """``pandas`` as ``Dataset._load_feat`` sees it: a missing ``token_seq``/``float_seq`` value reads as "".

    Upstream fills those with ``df[field].fillna(value="", inplace=True)`` (recbole/data/dataset/dataset.py:501),
    which does nothing under pandas 3 copy-on-write, so the next line's ``.split`` crashed on a NaN. The read
    and the split sit in one 80-line method: an override would copy it.
    """

    def __getattr__(self, name: str) -> Any:
        import pandas as pd

        return getattr(pd, name)

    @staticmethod
    def read_csv(*args: Any, **kwargs: Any) -> Any:
        import pandas as pd

        frame = pd.read_csv(*args, **kwargs)
        for column in frame.columns:
            if str(column).endswith("seq"):
                frame[column] = frame[column].fillna("")
        return frame


def _replace(module: Any, attribute: str, value: Any) -> None:
    owner_name, _, name = attribute.rpartition(".")
    owner = getattr(module, owner_name) if owner_name else module
    UPSTREAM.setdefault(f"{module.__name__}:{attribute}", getattr(owner, name))
    setattr(owner, name, value)


def _fix_configurator(module: Any) -> None:
    _replace(module, "Config.compatibility_settings", numpy_aliases)


def filter_amp_warnings() -> None:
    """trainer.py:235, 1440, 1453 build ``torch.cuda.amp``'s objects, deprecated since torch 2.4, on every run:
    the warning is RecBole's alone, so it is filtered for RecBole's trainer module only."""
    warnings.filterwarnings(
        "ignore", message=r".*torch\.cuda\.amp\..* is deprecated", category=FutureWarning, module=r"recbole\.trainer"
    )


def _fix_trainer(module: Any) -> None:
    _replace(module, "torch", TrustedTorchLoad())
    filter_amp_warnings()


def _fix_dataset(module: Any) -> None:
    """The empty-sequence read, and pandas 3.1's warnings about RecBole's own ``inplace=True`` calls
    (dataset.py:1065, 1104 and others; PDEP-8) and dataset.py:501's no-op ``fillna``, for RecBole's modules."""
    import pandas as pd

    _replace(module, "pd", PandasReadingEmptySequences())
    category = getattr(pd.errors, "Pandas4Warning", None)
    if category is not None:
        warnings.filterwarnings("ignore", message=".*inplace keyword", category=category, module=r"recbole\.")
    warnings.filterwarnings("ignore", category=pd.errors.ChainedAssignmentError, module=r"recbole\.data\.dataset")


def _no_anomaly_detection(_module: Any) -> None:
    """``recbole/model/sequential_recommender/sine.py:25`` calls ``torch.autograd.set_detect_anomaly(True)`` at
    import, for the whole process; importing any RecBole sequential model (the package imports them all) then
    makes every backward pass record stack traces, several times slower. Switched back off right after."""
    import torch

    torch.autograd.set_detect_anomaly(False)


#: What to do once each RecBole module is imported.
FIXES: dict[str, Callable[[Any], None]] = {
    "recbole.config.configurator": _fix_configurator,
    "recbole.trainer.trainer": _fix_trainer,
    "recbole.data.dataset.dataset": _fix_dataset,
    "recbole.model.sequential_recommender.sine": _no_anomaly_detection,
}


class _AfterImport(importlib.abc.MetaPathFinder):
    """Applies a fix right after its module is first imported, so that nothing is imported for it."""

    def __init__(self, pending: dict[str, Callable[[Any], None]]) -> None:
        self.pending = pending

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        fix = self.pending.pop(fullname, None)
        if fix is None:
            return None
        if not self.pending:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader

        class _FixingLoader(importlib.abc.Loader):
            def create_module(self, spec: Any) -> Any:
                return loader.create_module(spec)

            def exec_module(self, module: Any) -> None:
                loader.exec_module(module)
                fix(module)

        spec.loader = _FixingLoader()
        return spec


_INSTALLED = False


def install() -> None:
    """Apply every fix of :data:`FIXES` now or when its module is imported. Safe to call again."""
    global _INSTALLED
    if _INSTALLED:
        return
    _INSTALLED = True
    pending = {}
    for module, fix in FIXES.items():
        if module in sys.modules:
            fix(sys.modules[module])
        else:
            pending[module] = fix
    if pending:
        sys.meta_path.insert(0, _AfterImport(pending))
