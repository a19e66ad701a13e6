"""RecBole atomic ``.inter`` files of clicks: the one writer that the converters and the synthetic generator share.

An atomic file here has one click per row: ``session_id:token``, ``item_id:token``, ``timestamp:float`` (Unix
seconds, UTC), tab-separated, sessions ordered by their first click.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

INTER_HEADER = "session_id:token\titem_id:token\ttimestamp:float"
#: Seconds in a calendar day: the unit of the atomic files' timestamps against the day grid.
SECONDS_PER_DAY = 86_400
PathLike = str | os.PathLike[str]


class ConversionError(ValueError):
    """Bad input for a converter; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class ConversionSummary:
    """What a converter wrote, so callers and the CLI can report it without re-reading the file."""

    path: Path
    n_clicks: int
    n_sessions: int
    n_items: int
    first: datetime
    last: datetime
    n_dropped: int = 0

    def __str__(self) -> str:
        line = (
            f"wrote {self.path}: {self.n_clicks:,} clicks, {self.n_sessions:,} sessions, "
            f"{self.n_items:,} items, {self.first:%Y-%m-%d} .. {self.last:%Y-%m-%d}"
        )
        if self.n_dropped:
            line += f" (dropped {self.n_dropped:,} rows with a missing session, item or time)"
        return line


def check_name(name: str) -> None:
    if not name or name in (".", "..") or any(s in name for s in ("/", "\\")):
        raise ConversionError(f"invalid dataset name {name!r}; --name must be a plain folder name like 'diginetica'")


def write_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` as a tab-separated atomic file, through a temp file in the target folder (``os.replace``),
    so a failure never leaves a partial file (nor a new, empty folder) behind, and a reader never sees one."""
    new_dirs = [d for d in (path.parent, *path.parent.parents) if not d.exists()]  # deepest first
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        frame.to_csv(tmp, sep="\t", index=False, lineterminator="\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        for directory in new_dirs:
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise


def _format_seconds(ts: np.ndarray) -> np.ndarray | pd.Series:
    """Integer seconds when all are whole, else exactly 3 decimals. Formatted here, vectorised, because
    ``to_csv(float_format=...)`` formats value by value and dominates the run time on big logs."""
    if np.all(ts == np.floor(ts)):
        return ts.astype(np.int64)
    ms = np.round(np.abs(ts) * 1000).astype(np.int64)
    sign = pd.Series(np.where(ts < 0, "-", ""), dtype=str)
    return sign + pd.Series(ms // 1000).astype(str) + "." + pd.Series(ms % 1000).astype(str).str.zfill(3)


def write_inter(df: pd.DataFrame, output_dir: PathLike, name: str) -> ConversionSummary:
    """Sort, renumber and write clicks as ``<output_dir>/<name>/<name>.inter``; shared by all converters.

    ``df`` has columns ``session_id`` (any raw session key), ``item_id`` and ``timestamp`` (Unix
    seconds, UTC). Rows missing any of them are dropped and counted in ``n_dropped``. Sessions are
    ordered by their first click; ties (same start, same time) keep the order of ``df``.
    Timestamps are written as integers when all are whole seconds, else with 3 decimals.
    """
    check_name(name)
    usable = df[["session_id", "item_id", "timestamp"]].dropna()
    if usable.empty:
        raise ConversionError(f"no usable clicks: all {len(df):,} rows miss a session, an item or a time")
    codes, _ = pd.factorize(usable["session_id"])  # numbered by first appearance, i.e. log order
    ts = usable["timestamp"].to_numpy(dtype=float)
    start = pd.Series(ts).groupby(codes).transform("min").to_numpy()
    order = np.lexsort((ts, codes, start))  # stable: ties keep the log order
    codes = codes[order]
    ts = ts[order]
    frame = pd.DataFrame(
        {
            "session_id:token": np.cumsum(np.r_[True, codes[1:] != codes[:-1]]),
            "item_id:token": usable["item_id"].astype(str).array[order],
            "timestamp:float": _format_seconds(ts),
        }
    )
    path = Path(output_dir) / name / f"{name}.inter"
    write_atomic(frame, path)
    return ConversionSummary(
        path=path,
        n_clicks=len(frame),
        n_sessions=int(frame["session_id:token"].iloc[-1]),
        n_items=int(usable["item_id"].nunique()),
        first=datetime.fromtimestamp(float(ts.min()), tz=UTC),
        last=datetime.fromtimestamp(float(ts.max()), tz=UTC),
        n_dropped=len(df) - len(usable),
    )
