"""Reading raw delimited click logs for the converters: the needed columns as text, with errors that name the file
and line (a bad separator, more fields than the header, a file cut short, times that are no times or out of range).

Knows raw files and pandas, nothing of formats' meanings (:mod:`recbole_tasrec.data.convert`) or of models.
"""

from __future__ import annotations

import contextlib
import lzma
import sys
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
from tqdm import tqdm

from recbole_tasrec.data.atomic import MAX_SECONDS, MIN_SECONDS, ConversionError, ends_mid_line

PROGRESS_MIN_BYTES = 32 * 1024**2  # inputs at least this big get a progress bar on stderr
CHUNK_ROWS = 1_000_000

COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zip": "zip"}
_TIME_UNITS = {
    "s": "numbers (seconds)",
    "ms": "numbers (milliseconds)",
    "iso": "ISO 8601 date-times",
    "date": "YYYY-MM-DD dates",
}
_EPOCH = pd.Timestamp(0, tz="UTC").as_unit("us")
_OUT_OF_RANGE = "out of range (click times lie between 1970-01-01 and 2262-04-11 UTC, offsets are not negative)"


def _empty_input(path: Path) -> ConversionError:
    return ConversionError(f"input file is empty: {path}; it needs a header line and at least one click")


def check_input(path: Path) -> None:
    """Refuse a missing, non-file or empty input before any reading, saying what to pass."""
    if not path.exists():
        raise ConversionError(f"input file not found: {path}; pass --input with the path to the raw log")
    if not path.is_file():
        raise ConversionError(f"input is not a file: {path}; pass --input with the path to the raw log")
    if path.stat().st_size == 0:
        raise _empty_input(path)


@contextlib.contextmanager
def open_with_progress(path: Path) -> Iterator[IO[bytes]]:
    """Open ``path`` for binary reading, with a byte progress bar on stderr when the file is big."""
    size = path.stat().st_size
    with (
        path.open("rb") as raw,
        tqdm.wrapattr(
            raw,
            "read",
            total=size,
            desc=f"reading {path.name}",
            file=sys.stderr,
            disable=size < PROGRESS_MIN_BYTES,
            leave=False,
        ) as stream,
    ):
        yield stream


def select_columns(
    path: Path, found: Sequence[str], variants: Sequence[Mapping[str, str]], hint: str, sep: str | None = None
) -> Mapping[str, str]:
    """Pick the first header variant (raw name -> our name) whose columns are all present."""
    for variant in variants:
        if set(variant) <= set(found):
            return variant
    closest = max(variants, key=lambda v: len(set(v) & set(found)))
    missing = ", ".join(repr(c) for c in closest if c not in found)
    message = f"{path}: missing column(s) {missing}; the file has {', '.join(map(repr, found))}. {hint}"
    if sep is not None and len(found) == 1:
        message += f" Only one column was found: is the separator right (expected {sep!r})?"
    raise ConversionError(message)


def line_of(row: int) -> str:
    """Where data row ``row`` (0-based, blank lines included) of a delimited log is: after the header line."""
    return f"line {row + 2}"


def read_log(path: Path, *, sep: str, variants: Sequence[Mapping[str, str]], hint: str) -> pd.DataFrame:
    """Read the needed columns of a delimited log, as strings, renamed to our names; the index is the data row,
    so that errors can name the line (:func:`line_of`; a blank line is read as a row of missing values, dropped and
    counted like them, which keeps the line numbers exact).

    Ids stay strings so they are written exactly as in the raw log (no ``123.0`` from a column with
    gaps); the item column becomes categorical to keep big logs small. Big files are read in chunks
    behind a progress bar. A line with more fields than the header is an error (pandas would otherwise shift
    the columns or drop the extra fields silently), as is a file that ends in the middle of a line.
    """
    check_input(path)
    compression = COMPRESSION.get(path.suffix.lower())
    try:
        found = list(pd.read_csv(path, sep=sep, nrows=0, compression=compression).columns)
        columns = select_columns(path, found, variants, hint, sep)
        with open_with_progress(path) as stream, warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # a first data line longer than the header
            chunks = pd.read_csv(
                stream,
                sep=sep,
                dtype=str,
                index_col=False,
                skip_blank_lines=False,
                chunksize=CHUNK_ROWS,
                compression=compression,
            )
            frame = pd.concat([chunk[list(columns)] for chunk in chunks])
    except pd.errors.EmptyDataError:
        raise _empty_input(path) from None
    except pd.errors.ParserWarning:
        raise ConversionError(
            f"{path}, {line_of(0)}: more fields than the header's {len(found)}; check the separator ({sep!r}) and "
            "that the first line is the header"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise ConversionError(f"cannot read {path} as {sep!r}-separated text: {exc}") from None
    if frame.empty:
        raise ConversionError(f"{path} has a header but no rows; it needs at least one click")
    _check_last_line(path, frame, compression)
    frame = frame.rename(columns=columns)
    frame["item_id"] = frame["item_id"].astype("category")
    return frame


def _check_last_line(path: Path, frame: pd.DataFrame, compression: str | None) -> None:
    """A file cut short mid-line (a copy or download that stopped) ends without a newline, its last line missing
    fields: refuse it rather than drop that click silently. (A compressed file cut short fails to decompress.)"""
    if compression is not None or not frame.iloc[-1].isna().any() or not ends_mid_line(path):
        return
    raise ConversionError(
        f"{path}, {line_of(int(frame.index[-1]))}: the file ends in the middle of this line (fields are missing); "
        "it looks cut short: copy it again, or delete its incomplete last line"
    )


def to_seconds(
    values: pd.Series, unit: str, column: str, path: Path, hint: str = "", where: Callable[[int], str] = line_of
) -> pd.Series:
    """Parse a raw time column to float seconds (UTC); missing values stay NaN, bad ones raise, naming where the
    first is (``where(index)``, by default its line).

    ``unit`` is one of ``s``, ``ms``, ``iso`` (naive date-times are taken as UTC) or ``date``. Times (and offsets)
    must lie in ``MIN_SECONDS .. MAX_SECONDS`` (1970-01-01 .. 2262-04-11 UTC): a log outside has the wrong unit.
    """
    if unit in ("s", "ms"):
        seconds = pd.to_numeric(values, errors="coerce").astype(float)
        if unit == "ms":
            seconds = seconds / 1000
    else:
        fmt = "%Y-%m-%d" if unit == "date" else "ISO8601"
        parsed = pd.to_datetime(values, utc=True, errors="coerce", format=fmt).dt.as_unit("us")  # us: up to 9999
        seconds = (parsed - _EPOCH) / pd.Timedelta(seconds=1)
    hint = hint or "fix or remove those rows"
    for bad, what in (
        (values.notna() & ~np.isfinite(seconds), f"that are not {_TIME_UNITS[unit]}"),
        (np.isfinite(seconds) & ~seconds.between(MIN_SECONDS, MAX_SECONDS), _OUT_OF_RANGE),
    ):
        if bad.any():
            first = bad.to_numpy().argmax()
            raise ConversionError(
                f"{path}, {where(int(values.index[first]))}: column {column!r} has {int(bad.sum()):,} value(s) {what}, "
                f"e.g. {values.iloc[first]!r}; {hint}"
            )
    return seconds
