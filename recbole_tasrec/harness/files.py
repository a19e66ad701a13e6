"""The result files of the harness and the benchmarks, each written crash-safe (temporary name, then rename), so
that a stopped run never leaves a half-written result; and the charts' matplotlib, loaded only when one is drawn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from recbole_tasrec import safe_write
from recbole_tasrec.safe_write import atomic_path


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path``; returns ``path``."""
    safe_write.write_text(path, text)
    return Path(path)


def write_json(path: Path, data: Any, indent: int = 2) -> Path:
    """Write ``data`` as indented JSON with a final newline; returns ``path``."""
    return write_text(path, json.dumps(data, indent=indent) + "\n")


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` as a compressed ``.npz``; returns ``path``."""
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)
    return Path(path)


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only ``Agg`` backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> Path:
    """Lay out ``fig``, write it as an image (the format from ``path``'s suffix) and close it; returns ``path``."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    pyplot().close(fig)
    return Path(path)
