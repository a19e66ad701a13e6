"""recbole-tasrec: TASRec (SIGIR 2021) for RecBole 1.2.1 on a modern stack.

Importing the package loads neither torch nor RecBole: it only arranges for the few module-level RecBole fixes
of :mod:`recbole_tasrec.compat` to apply when RecBole's modules are imported; everything else extends RecBole by
subclassing (``docs/recbole-fixes.md``). The public names below load on first use.
"""

from __future__ import annotations

from typing import Any

from recbole_tasrec import compat

compat.install()

__all__ = ["load_data_and_model", "prepare_data", "run_recbole_tasrec"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in __all__:
        from recbole_tasrec import quick_start

        return getattr(quick_start, name)
    raise AttributeError(f"module 'recbole_tasrec' has no attribute {name!r}")
