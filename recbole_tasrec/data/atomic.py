"""RecBole atomic ``.inter`` files of clicks: the one writer that the converters and the synthetic generator share.

An atomic file here has one click per row: ``session_id:token``, ``item_id:token``, ``timestamp:float`` (Unix
seconds, UTC), tab-separated, sessions ordered by their first click.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from recbole_tasrec import safe_write

INTER_HEADER = "session_id:token\titem_id:token\ttimestamp:float"
#: Seconds in a calendar day: the unit of the atomic files' timestamps against the day grid.
SECONDS_PER_DAY = 86_400
#: Click times an atomic file may hold, in Unix seconds: from 1970-01-01 to the last instant pandas can represent
#: (2262-04-11). A log before 1970 or past 2262 has a wrong time unit (milliseconds read as seconds land around the
#: year 50,000) or corrupt values; the converters and the data set refuse it instead of failing deep in pandas.
MIN_SECONDS, MAX_SECONDS = 0, int(pd.Timestamp.max.timestamp())
PathLike = str | os.PathLike[str]
# The crash-safe writer lives in safe_write; its old names here stay importable for existing callers.
atomic_path = safe_write.atomic_path
write_atomic_bytes = safe_write.write_bytes
write_atomic_text = safe_write.write_text


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
    """Refuse a data set name that is no plain folder name (it becomes ``<name>/<name>.inter``)."""
    if not name or name in (".", "..") or any(s in name for s in ("/", "\\", "\0")) or len(name.encode()) > 200:
        raise ConversionError(f"invalid dataset name {name!r}; --name must be a plain folder name like 'diginetica'")


def write_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` as a tab-separated atomic file, crash-safely (:func:`~recbole_tasrec.safe_write.atomic_path`)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, lineterminator="\n")


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


# --------------------------------------------------------------------------- reading checks (the data set's)


class AtomicFileError(ValueError):
    """An atomic file that cannot be read as one; the message names the file (and line) and what to fix."""


_FEATURE_TYPES = ("token", "token_seq", "float", "float_seq")


def check_inter_header(path: Path, required: Mapping[str, str], sep: str = "\t", encoding: str = "utf-8") -> None:
    """Check an atomic file's header line before RecBole parses it (RecBole fails on a bad one with a bare
    ``too many values to unpack``): ``name:type`` fields separated by ``sep``, with ``required`` (name -> type)."""
    with path.open("rb") as raw:
        first = raw.readline()
    if not first.strip():
        raise AtomicFileError(f"{path} is empty; an atomic file starts with a header like {INTER_HEADER!r}")
    try:
        header = first.decode(encoding).rstrip("\n")
    except UnicodeDecodeError as exc:
        raise AtomicFileError(f"{path}, line 1: not {encoding} text ({exc.reason}); save it as {encoding}") from None
    if header.endswith("\r"):
        raise AtomicFileError(f"{path}, line 1: Windows line endings (CRLF); convert the file to LF (dos2unix)")
    fields = dict(field.partition(":")[::2] for field in header.split(sep))
    bad = [f"{name}:{kind}" for name, kind in fields.items() if kind not in _FEATURE_TYPES]
    if bad:
        hint = " Is the separator a tab?" if sep == "\t" and any(c in header for c in ",; ") else ""
        raise AtomicFileError(
            f"{path}, line 1: header field {bad[0]!r} is not name:type with a RecBole type "
            f"({', '.join(_FEATURE_TYPES)}); the header should look like {INTER_HEADER!r}.{hint}"
        )
    for name, kind in required.items():
        if fields.get(name) != kind:
            found = f"it is {name}:{fields[name]}" if name in fields else f"the header has {', '.join(fields)}"
            raise AtomicFileError(f"{path}, line 1: needs the column {name}:{kind}; {found}")


def ends_mid_line(path: Path) -> bool:
    """True if a non-empty file's last byte is no line end: the mark of a copy or download cut short."""
    with path.open("rb") as raw:
        if raw.seek(0, os.SEEK_END) == 0:
            return False
        raw.seek(-1, os.SEEK_END)
        return raw.read(1) not in (b"\n", b"\r")


def describe_read_error(path: Path, float_columns: Sequence[str], sep: str = "\t", encoding: str = "utf-8") -> str:
    """Why pandas could not read an atomic file, with the line: called only after a read failed, so it may read
    the file again. Returns ``""`` when it finds nothing more specific than the reader's own error."""
    data = path.read_bytes()
    try:
        data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return f"line {line}: not {encoding} text ({exc.reason}); save it as {encoding}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(io.BytesIO(data), sep=sep, dtype=str, index_col=False, skip_blank_lines=False)
    except pd.errors.ParserWarning:
        return "line 2: more fields than the header"
    except pd.errors.ParserError as exc:
        return str(exc).removeprefix("Error tokenizing data. C error: ")
    for column in float_columns:
        values = frame[column]
        bad = values.notna() & pd.to_numeric(values, errors="coerce").isna()
        if bad.any():
            row = int(bad.to_numpy().argmax())
            return f"line {row + 2}: {column.partition(':')[0]} {values.iloc[row]!r} is not a number"
    return ""
