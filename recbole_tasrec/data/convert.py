"""Convert raw click logs into RecBole atomic ``.inter`` files.

Every converter writes ``<output_dir>/<name>/<name>.inter`` with the header
``session_id:token<TAB>item_id:token<TAB>timestamp:float`` and one row per click. Rows are sorted by
session start time, then by time within the session (ties keep the log order), so a reader can group
sessions and split by day without re-sorting. Session ids are renumbered 1..N in that order (compact
and naturally sorted); item ids are the raw ids as string tokens; timestamps are Unix seconds, UTC.

Rows that miss a session, an item or a time are dropped and counted in the summary (raw logs have a
few); anything else that looks wrong raises :class:`ConversionError` before any output is written.
This module knows raw formats and atomic files, nothing of models.

Usage::

    python -m recbole_tasrec.data.convert {retailrocket,diginetica,aotm,csv} --input PATH \\
        --output-dir DIR [--name NAME]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from recbole_tasrec.data.atomic import (
    INTER_HEADER,
    ConversionError,
    ConversionSummary,
    PathLike,
    write_inter,
)
from recbole_tasrec.data.raw_log import (
    COMPRESSION,
    check_input,
    open_with_progress,
    read_log,
    select_columns,
    to_seconds,
)

__all__ = [
    "INTER_HEADER",
    "ConversionError",
    "ConversionSummary",
    "convert_aotm",
    "convert_csv",
    "convert_diginetica",
    "convert_retailrocket",
    "main",
    "write_inter",
]

DEFAULT_OUTPUT_DIR = "atomic_data"


# --------------------------------------------------------------------------- formats

_RETAILROCKET_HINT = "A Retailrocket events.csv has the header timestamp,visitorid,event,itemid,transactionid."
_DIGINETICA_HINT = (
    "A Diginetica train-item-views.csv is ';'-separated with the header "
    "sessionId;userId;itemId;timeframe;eventdate (or session_id;user_id;item_id;timeframe;eventdate)."
)
_AOTM_HINT = (
    "session-rec's playlists-aotm.csv is tab-separated with the header "
    "UserId SessionId ItemId Time ArtistId; for the original AotM-2011 data pass aotm2011_playlists.json.gz."
)


def convert_retailrocket(
    input: PathLike, output_dir: PathLike, name: str = "retailrocket", session_gap_minutes: float = 30
) -> ConversionSummary:
    """Convert Retailrocket ``events.csv``: keep ``view`` events and cut each visitor's clicks into
    sessions after more than ``session_gap_minutes`` of inactivity (session-rec's convention), since
    the log has visitors, not sessions."""
    path = Path(input)
    if not session_gap_minutes > 0:
        raise ConversionError(f"--session-gap-minutes must be positive, got {session_gap_minutes}")
    columns = {"timestamp": "time", "visitorid": "visitor", "event": "event", "itemid": "item_id"}
    log = read_log(path, sep=",", variants=[columns], hint=_RETAILROCKET_HINT)
    views = log[log["event"] == "view"]
    if views.empty:
        found = ", ".join(map(repr, log["event"].dropna().unique()[:5])) or "none"
        raise ConversionError(f"{path}: no 'view' events (events found: {found}); is this events.csv?")
    views = views.assign(timestamp=to_seconds(views["time"], "ms", "timestamp", path))
    views = views.sort_values(["visitor", "timestamp"], kind="stable")
    new_session = views["visitor"].ne(views["visitor"].shift()) | views["timestamp"].diff().gt(60 * session_gap_minutes)
    views["session_id"] = new_session.cumsum().where(views["visitor"].notna())
    return write_inter(views, output_dir, name)


def convert_diginetica(input: PathLike, output_dir: PathLike, name: str = "diginetica") -> ConversionSummary:
    """Convert Diginetica ``train-item-views.csv`` (camelCase or snake_case header).

    ``timeframe`` counts milliseconds from the session's start and ``eventdate`` is a date, so a
    click's time is midnight UTC of its session's day plus ``timeframe``. The session's day is its
    first click's: a session that crosses midnight has later ``eventdate`` values on its last clicks,
    which must not push those clicks a day ahead.
    """
    path = Path(input)
    variants = [
        {"sessionId": "session_id", "itemId": "item_id", "timeframe": "timeframe", "eventdate": "eventdate"},
        {
            "session_id": "session_id",
            "item_id": "item_id",
            "timeframe": "timeframe",
            "eventdate": "eventdate",
        },
    ]
    log = read_log(path, sep=";", variants=variants, hint=_DIGINETICA_HINT)
    offset = to_seconds(log["timeframe"], "ms", "timeframe", path)
    day = to_seconds(log["eventdate"], "date", "eventdate", path)
    by_time = offset.sort_values(kind="stable").index
    session_day = day.loc[by_time].groupby(log["session_id"].loc[by_time], sort=False).transform("first")
    return write_inter(log.assign(timestamp=session_day + offset), output_dir, name)


def _read_aotm_json(path: Path) -> pd.DataFrame:
    """Read AotM-2011 playlists, one session per playlist.

    Playlists carry one timestamp (minute precision) and no per-track times, so track ``k`` (from 0)
    gets the playlist's timestamp + ``k`` seconds: this keeps the track order through the sort by
    time. Item id: the track's MSD id when it has one, else ``"artist - title"``.
    """
    check_input(path)
    try:
        with (
            open_with_progress(path) as stream,
            gzip.open(stream) if path.suffix == ".gz" else contextlib.nullcontext(stream) as text,
        ):
            data = json.load(text)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"cannot read {path} as AotM-2011 JSON: {exc}") from None
    if not isinstance(data, list) or not all(isinstance(p, dict) for p in data):
        raise ConversionError(f"{path}: expected a JSON list of playlist objects (aotm2011_playlists.json)")
    if not data:
        raise ConversionError(f"{path} has no playlists; it needs at least one")
    playlists = pd.DataFrame.from_records(data)
    hint = "Each AotM-2011 playlist has mix_id, playlist ([[artist, title], msd_id|null] entries) and timestamp."
    columns = select_columns(path, list(playlists.columns), [{"playlist": "playlist", "timestamp": "time"}], hint)
    playlists = playlists[list(columns)].rename(columns=columns)
    if not playlists["playlist"].map(lambda p: isinstance(p, list)).all():
        raise ConversionError(f"{path}: a 'playlist' value is not a list. {hint}")
    # one row per track, keyed by its playlist's row; an empty playlist has no clicks
    tracks = playlists.explode("playlist").dropna(subset=["playlist"]).reset_index(names="session_id")
    items = []
    for playlist, entry in zip(tracks["session_id"], tracks["playlist"], strict=True):
        try:
            (artist, title), msd_id = entry
            if not isinstance(msd_id, str | None):
                raise TypeError
        except (TypeError, ValueError):
            raise ConversionError(f"{path}, playlist {playlist}: unexpected playlist entry {entry!r}. {hint}") from None
        items.append(msd_id or f"{artist} - {title}")
    position = tracks.groupby("session_id").cumcount()
    time = tracks["time"].set_axis(tracks["session_id"])  # errors name the playlist, counted from 0
    return pd.DataFrame(
        {
            "session_id": tracks["session_id"],
            "item_id": pd.Categorical(items),
            "timestamp": to_seconds(time, "iso", "timestamp", path, where=lambda i: f"playlist {i}").to_numpy()
            + position,
        }
    )


def convert_aotm(input: PathLike, output_dir: PathLike, name: str = "aotm") -> ConversionSummary:
    """Convert Art-of-the-Mix playlists: session-rec's tab-separated ``playlists-aotm.csv`` or, for a
    ``.json``/``.json.gz`` input, the original ``aotm2011_playlists.json.gz``."""
    path = Path(input)
    if path.name.lower().endswith((".json", ".json.gz")):
        return write_inter(_read_aotm_json(path), output_dir, name)
    columns = {"SessionId": "session_id", "ItemId": "item_id", "Time": "time"}
    log = read_log(path, sep="\t", variants=[columns], hint=_AOTM_HINT)
    return write_inter(log.assign(timestamp=to_seconds(log["time"], "s", "Time", path)), output_dir, name)


def _stem(path: Path) -> str:
    """File name without its extension(s): ``clicks.csv.gz`` -> ``clicks``."""
    return (path.with_suffix("") if path.suffix.lower() in COMPRESSION else path).stem


def convert_csv(
    input: PathLike,
    output_dir: PathLike,
    *,
    session_col: str,
    item_col: str,
    time_col: str,
    time_unit: str = "s",
    sep: str = ",",
    name: str | None = None,
) -> ConversionSummary:
    """Convert any delimited session log whose session, item and time columns are named by the caller;
    ``time_unit`` is ``s`` or ``ms`` (Unix time) or ``iso`` (date-times, naive ones taken as UTC).
    ``name`` defaults to the file's stem."""
    path = Path(input)
    if time_unit not in ("s", "ms", "iso"):
        raise ConversionError(f"--time-unit must be one of s, ms, iso; got {time_unit!r}")
    if len(sep) != 1 or sep in '"\r\n':
        raise ConversionError(f"--sep must be one character (not a quote or a newline), e.g. ',' or '\\t'; got {sep!r}")
    if len({session_col, item_col, time_col}) < 3:
        raise ConversionError(
            f"--session-col, --item-col and --time-col must name three different columns; got {session_col!r}, "
            f"{item_col!r}, {time_col!r}"
        )
    hint = "Check --session-col, --item-col and --time-col (names are case-sensitive) and --sep."
    columns = {session_col: "session_id", item_col: "item_id", time_col: "time"}
    log = read_log(path, sep=sep, variants=[columns], hint=hint)
    unit_hint = "fix those rows or pick the right --time-unit (s, ms or iso)"
    timestamp = to_seconds(log["time"], time_unit, time_col, path, hint=unit_hint)
    return write_inter(log.assign(timestamp=timestamp), output_dir, name or _stem(path))


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m recbole_tasrec.data.convert`` argument parser (one subcommand per format)."""
    parser = argparse.ArgumentParser(
        prog="python -m recbole_tasrec.data.convert",
        description="Convert a raw click log to a RecBole atomic file DIR/NAME/NAME.inter.",
    )
    formats = parser.add_subparsers(dest="format", required=True, metavar="{retailrocket,diginetica,aotm,csv}")

    def add(fmt: str, help_text: str) -> argparse.ArgumentParser:
        sub = formats.add_parser(fmt, help=help_text, description=help_text)
        sub.add_argument("--input", required=True, type=Path, help="the raw log file")
        sub.add_argument(
            "--output-dir",
            default=DEFAULT_OUTPUT_DIR,
            type=Path,
            help=f"folder that receives NAME/NAME.inter (default: {DEFAULT_OUTPUT_DIR})",
        )
        default_name = "the input file's stem" if fmt == "csv" else fmt
        sub.add_argument("--name", help=f"dataset name (default: {default_name})")
        return sub

    rr = add("retailrocket", "Retailrocket events.csv (views only, sessions cut after a gap)")
    rr.add_argument(
        "--session-gap-minutes",
        type=float,
        default=30,
        help="start a new session after more than this much inactivity (default: 30)",
    )
    add("diginetica", "Diginetica train-item-views.csv")
    add("aotm", "session-rec's playlists-aotm.csv or the original aotm2011_playlists.json.gz")
    csv = add("csv", "any delimited session log with named session, item and time columns")
    csv.add_argument("--session-col", required=True, help="column holding the session id")
    csv.add_argument("--item-col", required=True, help="column holding the item id")
    csv.add_argument("--time-col", required=True, help="column holding the click time")
    csv.add_argument(
        "--time-unit",
        choices=("s", "ms", "iso"),
        default="s",
        help="Unix seconds, Unix milliseconds or ISO 8601 date-times, naive = UTC (default: s)",
    )
    csv.add_argument(
        "--sep",
        default=",",
        type=lambda sep: sep.replace("\\t", "\t"),
        help="field separator; '\\t' means tab (default: ',')",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: convert, print the one-line summary, return the exit status (2 on bad input)."""
    args = build_parser().parse_args(argv)
    common = {"input": args.input, "output_dir": args.output_dir}
    if args.name is not None:
        common["name"] = args.name
    try:
        if args.format == "retailrocket":
            summary = convert_retailrocket(**common, session_gap_minutes=args.session_gap_minutes)
        elif args.format == "diginetica":
            summary = convert_diginetica(**common)
        elif args.format == "aotm":
            summary = convert_aotm(**common)
        else:
            summary = convert_csv(
                **common,
                session_col=args.session_col,
                item_col=args.item_col,
                time_col=args.time_col,
                time_unit=args.time_unit,
                sep=args.sep,
            )
    except (ConversionError, OSError) as exc:  # OSError: the output could not be written (nothing was left)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
