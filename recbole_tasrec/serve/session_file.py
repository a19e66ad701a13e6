"""Read click files for batch serving: a CSV or a RecBole ``.inter`` file -> sessions in click order.

A CSV has a header and one click per line, ``session_id,item_id`` (other columns are ignored; ``--sep``,
``--session-col`` and ``--item-col`` name others). Lines are in click order within each session. A RecBole
atomic ``.inter`` file (tab-separated, ``name:type`` headers) is read the same way and, if it has a
``timestamp`` column, each session's clicks are ordered by it (ties keep the file's order). Ids are read as
text, exactly as written. Every problem is a :class:`SessionFileError` that names the file and, where there
is one, the line.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


class SessionFileError(ValueError):
    """A click file that cannot be read as sessions; the message names the file and line."""


@dataclass
class SessionTable:
    """Clicks grouped by session: session ``s`` is ``items[offsets[s]:offsets[s + 1]]``, in click order."""

    session_ids: np.ndarray
    offsets: np.ndarray
    items: np.ndarray

    def __len__(self) -> int:
        return len(self.session_ids)

    def sessions(self, start: int = 0, stop: int | None = None) -> list[list[str]]:
        """Sessions ``start..stop`` as lists of item ids (what ``SessionRecommender`` takes)."""
        cuts = self.offsets[start : (len(self) if stop is None else stop) + 1]
        if len(cuts) < 2:
            return []
        return [chunk.tolist() for chunk in np.split(self.items[cuts[0] : cuts[-1]], cuts[1:-1] - cuts[0])]


def _read_frame(path: Path, sep: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, quoting=csv.QUOTE_MINIMAL)
    except FileNotFoundError as error:
        raise SessionFileError(f"{path} does not exist") from error
    except pd.errors.EmptyDataError as error:
        raise SessionFileError(f"{path} is empty: expected a header line and one click per line") from error
    except pd.errors.ParserError as error:
        raise SessionFileError(f"{path} is not a well-formed {sep!r}-separated file: {error}") from error
    except UnicodeDecodeError as error:
        raise SessionFileError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from error
    if not isinstance(frame.index, pd.RangeIndex):  # pandas makes extra leading fields an index, silently
        raise SessionFileError(f"{path}, line 2: more fields than the header has columns")
    frame.columns = [str(name).split(":", 1)[0].strip() for name in frame.columns]  # RecBole's name:type
    return frame


def _check_column(path: Path, frame: pd.DataFrame, name: str, option: str) -> pd.Series:
    if name not in frame.columns:
        raise SessionFileError(f"{path} has columns {list(frame.columns)} but no {name!r} (name it with {option})")
    values = frame[name]
    bad = values.isna() | (values.str.strip() == "")
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # 1-based, after the header
        raise SessionFileError(f"{path}, line {line}: empty {name!r} (a truncated or malformed line?)")
    return values


def _click_order(path: Path, frame: pd.DataFrame, codes: np.ndarray) -> np.ndarray:
    """Rows grouped by session (first appearance), in click order within each session."""
    if "timestamp" not in frame.columns:
        return np.argsort(codes, kind="stable")
    times = pd.to_numeric(frame["timestamp"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(times)
    if bad.any():
        line = int(np.flatnonzero(bad)[0]) + 2
        raise SessionFileError(f"{path}, line {line}: timestamp {frame['timestamp'].iloc[line - 2]!r} is not a number")
    return np.lexsort((np.arange(len(codes)), times, codes))


def read_sessions(
    path: str | os.PathLike[str], sep: str | None = None, session_col: str = "session_id", item_col: str = "item_id"
) -> SessionTable:
    """Read a click file (CSV or ``.inter``) into sessions; raises :class:`SessionFileError` on bad input."""
    path = Path(path)
    if path.is_dir():
        raise SessionFileError(f"{path} is a folder: pass a CSV or .inter file")
    inter = path.suffix == ".inter"
    frame = _read_frame(path, sep or ("\t" if inter else ","))
    sessions = _check_column(path, frame, session_col, "--session-col")
    items = _check_column(path, frame, item_col, "--item-col")
    if len(frame) == 0:
        raise SessionFileError(f"{path} has a header but no clicks")
    codes, uniques = pd.factorize(sessions, sort=False)
    order = _click_order(path, frame, codes) if inter else np.argsort(codes, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(uniques)))])
    return SessionTable(np.asarray(uniques, dtype=object), offsets, items.to_numpy(dtype=object)[order])
