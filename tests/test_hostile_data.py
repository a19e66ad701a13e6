"""Hostile input to the converters (every format) and to the data set, tried on purpose: each gets a clear error that
names the file (and line where it makes sense) or the documented handling; none crashes inside pandas or torch, and
none leaves partial output. (The serving API's hostile input: test_hostile_input.py; the runner's config:
test_hostile_config.py.)"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recbole_tasrec.config import Config
from recbole_tasrec.data.atomic import INTER_HEADER, AtomicFileError, atomic_path, write_atomic_text
from recbole_tasrec.data.convert import (
    ConversionError,
    convert_aotm,
    convert_csv,
    convert_diginetica,
    convert_retailrocket,
)
from recbole_tasrec.data.dataset import DataSplitError
from recbole_tasrec.quick_start import prepare_data
from recbole_tasrec.tune.report import plot_curves
from tests.conftest import small_settings

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

HEADERS = {
    "retailrocket": "timestamp,visitorid,event,itemid,transactionid",
    "diginetica": "sessionId;userId;itemId;timeframe;eventdate",
    "diginetica_snake": "session_id;user_id;item_id;timeframe;eventdate",
    "aotm": "UserId\tSessionId\tItemId\tTime\tArtistId",
    "csv": "s,i,t",
}
CONVERTERS: dict[str, Callable[[Path, Path], object]] = {
    "retailrocket": convert_retailrocket,
    "diginetica": convert_diginetica,
    "diginetica_snake": convert_diginetica,
    "aotm": convert_aotm,
    "csv": lambda path, out: convert_csv(path, out, session_col="s", item_col="i", time_col="t"),
}
#: One good click per format, as (session, item, time) -> a line.
ROW = {
    "retailrocket": lambda s, i, t: f"{t * 1000},{s},view,{i},",
    "diginetica": lambda s, i, t: f"{s};NA;{i};{t * 1000};2016-01-01",
    "diginetica_snake": lambda s, i, t: f"{s};NA;{i};{t * 1000};2016-01-01",
    "aotm": lambda s, i, t: f"1\t{s}\t{i}\t{t}\t7",
    "csv": lambda s, i, t: f"{s},{i},{t}",
}
GOOD = [(1, "a", 1_450_000_000), (1, "b", 1_450_000_060), (2, "a", 1_450_000_100)]


def good_log(fmt: str, extra: list[str] = (), rows: list[tuple] = GOOD) -> str:
    return "\n".join([HEADERS[fmt], *(ROW[fmt](*row) for row in rows), *extra]) + "\n"


def refused(fmt: str, tmp_path: Path, text: str | bytes, name: str = "log.csv") -> str:
    """Convert ``text``; it must fail with a ConversionError and leave no output at all. Returns the message."""
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "out"
    with pytest.raises(ConversionError) as info:
        CONVERTERS[fmt](path, out)
    assert not out.exists(), f"partial output left behind: {list(out.rglob('*'))}"
    return str(info.value)


# --- converters: named hostile input ------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", list(HEADERS))
def test_wrong_separator_names_the_file_and_the_missing_columns(fmt: str, tmp_path: Path) -> None:
    wrong = "|"
    text = good_log(fmt).replace({"retailrocket": ",", "aotm": "\t", "csv": ","}.get(fmt, ";"), wrong)
    message = refused(fmt, tmp_path, text)
    assert str(tmp_path / "log.csv") in message and "missing column" in message and "separator" in message


@pytest.mark.parametrize("fmt", list(HEADERS))
def test_more_fields_than_the_header_names_the_line(fmt: str, tmp_path: Path) -> None:
    sep = {"retailrocket": ",", "aotm": "\t", "csv": ","}.get(fmt, ";")
    message = refused(fmt, tmp_path, good_log(fmt, extra=[ROW[fmt](3, "c", 1_450_000_200) + sep + "x"]))
    assert "line 5" in message and "fields" in message
    # the first data line longer than the header: pandas would shift every column silently
    lines = good_log(fmt).splitlines()
    lines[1] += sep + "x"
    assert "line 2: more fields than the header" in refused(fmt, tmp_path, "\n".join(lines) + "\n")


@pytest.mark.parametrize("fmt", list(HEADERS))
def test_a_file_cut_short_mid_line_is_refused_with_its_line(fmt: str, tmp_path: Path) -> None:
    text = good_log(fmt).rstrip("\n")
    cut = text[: text.rindex("\n") + 4]  # the last line keeps 3 characters: fields are missing
    message = refused(fmt, tmp_path, cut)
    assert f"{tmp_path / 'log.csv'}, line 4" in message and "cut short" in message


@pytest.mark.parametrize("fmt", list(HEADERS))
@pytest.mark.parametrize(
    ("time", "what"), [(-50, "out of range"), (10**13, "out of range"), ("soon", "not"), ("1e400", "not")]
)
def test_bad_times_name_the_line(fmt: str, time: object, what: str, tmp_path: Path) -> None:
    bad = {
        "retailrocket": f"{time},3,view,c,",
        "diginetica": f"3;NA;c;{time};2016-01-01",
        "diginetica_snake": f"3;NA;c;{time};2016-01-01",
        "aotm": f"1\t3\tc\t{time}\t7",
        "csv": f"3,c,{time}",
    }[fmt]
    message = refused(fmt, tmp_path, good_log(fmt, extra=[bad]))
    assert f"{tmp_path / 'log.csv'}, line 5" in message and what in message and repr(str(time)) in message


@pytest.mark.parametrize("date", ["2016-13-01", "9999-12-31", "1969-12-31", "16-01-01"])
def test_diginetica_bad_dates_name_the_line(date: str, tmp_path: Path) -> None:
    message = refused("diginetica", tmp_path, good_log("diginetica", extra=[f"3;NA;c;0;{date}"]))
    assert "line 5" in message and "eventdate" in message


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([{"playlist": [[["a", "b"], ["not", "an id"]]], "timestamp": "2005-03-27T10:53:00"}], "playlist 0"),
        ([{"playlist": [[["a", "b"], None]], "timestamp": "9999-12-31T00:00:00"}], "playlist 0: column 'timestamp'"),
        ([{"playlist": [[["a", "b"], None]], "timestamp": "yesterday"}], "playlist 0"),
        ({"playlist": []}, "expected a JSON list"),
    ],
)
def test_aotm_json_hostile_entries(payload: object, message: str, tmp_path: Path) -> None:
    assert message in refused("aotm", tmp_path, gzip.compress(json.dumps(payload).encode()), "p.json.gz")


@pytest.mark.parametrize("name", ["p.json.gz", "log.csv.gz"])
def test_truncated_compressed_files_are_refused(name: str, tmp_path: Path) -> None:
    fmt = "aotm" if name.endswith("json.gz") else "csv"
    body = json.dumps([{"playlist": [[["a", "b"], None]], "timestamp": "2005-03-27T10:53:00"}]) * 50
    data = gzip.compress(body.encode() if fmt == "aotm" else good_log("csv").encode() * 50)
    assert "cannot read" in refused(fmt, tmp_path, data[: len(data) // 2], name)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sep": ""}, "--sep must be one character"),
        ({"sep": "::"}, "--sep must be one character"),
        ({"sep": '"'}, "--sep must be one character"),
        ({"item_col": "s"}, "three different columns"),
        ({"name": "a\0b"}, "invalid dataset name"),
        ({"name": "x" * 300}, "invalid dataset name"),
    ],
)
def test_csv_bad_options(kwargs: dict, message: str, tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(good_log("csv"))
    options = {"session_col": "s", "item_col": "i", "time_col": "t"} | kwargs
    with pytest.raises(ConversionError, match=message):
        convert_csv(path, tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()


def test_unicode_long_ids_duplicates_and_a_huge_session_are_kept_exactly(tmp_path: Path) -> None:
    """Documented handling: ids are text, written as given (quoted where they hold a tab); duplicate clicks stay."""
    ids = ["ñ", "𝄞 music", "a\tb", "x" * 5000, "١٢٣", "dup"]
    rows = [(1, item, 1_450_000_000 + k) for k, item in enumerate(ids)] + [(1, "dup", 1_450_000_000 + len(ids))]
    rows += [(2, f"i{k % 40}", 1_450_100_000 + k) for k in range(30_000)]
    path = tmp_path / "log.csv"
    pd.DataFrame(rows, columns=["s", "i", "t"]).to_csv(path, index=False)
    summary = CONVERTERS["csv"](path, tmp_path / "out")
    inter = pd.read_csv(summary.path, sep="\t", dtype=str)
    assert inter["item_id:token"].tolist() == [r[1] for r in rows]
    assert summary.n_sessions == 2 and summary.n_clicks == len(rows)


# --- converters: anything at all ----------------------------------------------------------------------------------
line_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@FAST
@given(fmt=st.sampled_from(list(HEADERS)), lines=st.lists(line_text, max_size=6), header=st.booleans())
def test_arbitrary_text_converts_or_fails_cleanly(fmt: str, lines: list[str], header: bool, tmp_path: Path) -> None:
    """Any text: a valid atomic file, or a ConversionError and no output; never another exception."""
    case = tmp_path / f"case{abs(hash((fmt, tuple(lines), header)))}"
    case.mkdir()
    path = case / "log.csv"
    path.write_text("\n".join(([HEADERS[fmt]] if header else []) + lines), encoding="utf-8")
    try:
        summary = CONVERTERS[fmt](path, case / "out")
    except ConversionError as err:
        assert str(err) and not (case / "out").exists()
    else:
        assert summary.path.read_text().startswith(INTER_HEADER + "\n") and summary.n_clicks >= 1


@FAST
@given(data=st.binary(max_size=200), fmt=st.sampled_from(["aotm", "csv"]))
def test_arbitrary_bytes_as_compressed_input_fail_cleanly(data: bytes, fmt: str, tmp_path: Path) -> None:
    case = tmp_path / f"case{abs(hash((data, fmt)))}"
    case.mkdir()
    name = "p.json.gz" if fmt == "aotm" else "log.csv.gz"
    (case / name).write_bytes(data)
    with pytest.raises(ConversionError):
        CONVERTERS[fmt](case / name, case / "out")
    assert not (case / "out").exists()


@FAST
@given(items=st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=300), min_size=1))
def test_any_unicode_item_ids_round_trip(items: list[str], tmp_path: Path) -> None:
    """Documented handling: ids are text, kept exactly, except those pandas reads as missing (empty, NA, null, nan,
    ... after stripping nothing) which are dropped and counted."""
    case = tmp_path / f"case{abs(hash(tuple(items)))}"
    case.mkdir()
    path = case / "log.csv"
    pd.DataFrame({"s": 1, "i": items, "t": range(len(items))}).to_csv(path, index=False)
    kept = pd.read_csv(path, dtype=str)["i"].dropna().tolist()  # pandas' own reading of missing values
    try:
        summary = CONVERTERS["csv"](path, case / "out")
    except ConversionError as err:
        assert not kept and "no usable clicks" in str(err)
        return
    assert pd.read_csv(summary.path, sep="\t", dtype=str)["item_id:token"].tolist() == kept
    assert summary.n_dropped == len(items) - len(kept)


# --- the data set -------------------------------------------------------------------------------------------------
T0 = 1_600_000_000


def clicks(days: int = 6, per_day: int = 12, items: int = 8, t0: int = T0, sid: int = 0) -> list[str]:
    """Sessions of 3 clicks over ``days`` days, ids after ``sid``; every item is clicked often enough to be kept."""
    rows = []
    for day in range(days):
        for k in range(per_day):
            sid += 1
            rows += [f"{sid}\t{(sid + j) % items + 1}\t{t0 + day * 86_400 + k * 60 + j}" for j in range(3)]
    return rows


def prepare(tmp_path: Path, text: str | bytes, **overrides: object):
    folder = tmp_path / "data" / "hostile"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hostile.inter").write_bytes(text if isinstance(text, bytes) else text.encode())
    before = sorted(p.name for p in folder.iterdir())
    config_dict = small_settings(
        tmp_path / "data", tmp_path / "runs", min_item_clicks=1, topk=[5], valid_metric="Recall@5", **overrides
    )
    try:
        return prepare_data(Config("TASRec", "hostile", config_dict=config_dict))
    finally:
        assert sorted(p.name for p in folder.iterdir()) == before  # nothing written next to the data


def good_inter(rows: list[str] | None = None, extra: list[str] = ()) -> str:
    return "\n".join([INTER_HEADER, *(clicks() if rows is None else rows), *extra]) + "\n"


N = len(clicks()) + 2  # the line number of a row appended to good_inter()


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("", AtomicFileError, "is empty"),
        (good_inter().replace("\t", ","), AtomicFileError, "line 1: header field"),
        (good_inter().replace("\t", ";"), AtomicFileError, "line 1: header field"),
        (good_inter().replace("timestamp:float", "timestamp:token"), AtomicFileError, "needs the column timestamp"),
        (good_inter().replace("item_id:token", "item_id:float"), AtomicFileError, "needs the column item_id:token"),
        ("session_id:token\titem_id:token\n1\t2\n", AtomicFileError, "needs the column timestamp:float"),
        (good_inter().replace("\n", "\r\n"), AtomicFileError, "CRLF"),
        (INTER_HEADER + "\n", AtomicFileError, "has a header but no clicks"),
        (good_inter(extra=["5\t3\tnoon"]), AtomicFileError, f"line {N}: timestamp 'noon' is not a number"),
        (good_inter(extra=["5\t3\t-60"]), AtomicFileError, f"line {N}: timestamp is -60.0"),
        (good_inter(extra=["5\t3\t1e300"]), AtomicFileError, f"line {N}: timestamp is 1e+300"),
        (good_inter(extra=["5\t3\tinf"]), AtomicFileError, f"line {N}: timestamp is inf"),
        (good_inter(extra=["5\t3\t"]), AtomicFileError, f"line {N}: timestamp is empty"),
        (good_inter(extra=["5\t3"]), AtomicFileError, f"line {N}: timestamp is empty"),
        (good_inter([clicks()[0] + "\tx", *clicks()[1:]]), AtomicFileError, "line 2: more fields"),
        (good_inter().encode() + b"5\t\xe9\t1600000000\n", AtomicFileError, f"line {N}: not utf-8 text"),
        (b"\xff\xfe" + good_inter().encode(), AtomicFileError, "line 1: not utf-8"),
        (good_inter(clicks(days=1)), DataSplitError, "spans 1 day(s)"),
        (good_inter(clicks(items=3)), DataSplitError, "fewer than topk's largest 5"),
    ],
    ids=lambda v: None if isinstance(v, str | bytes) else getattr(v, "__name__", None),
)
def test_hostile_atomic_files(tmp_path: Path, text: str | bytes, error: type, message: str) -> None:
    with pytest.raises(error) as info:
        prepare(tmp_path, text)
    assert message in str(info.value)
    if "line" in message:
        assert str(tmp_path / "data" / "hostile" / "hostile.inter") in str(info.value)


def test_documented_handling_of_odd_but_valid_data(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Empty days only decay the graph (a warning), duplicate clicks are clicks, unicode and long ids are tokens, a
    huge session is cut into prefixes of MAX_ITEM_LIST_LENGTH, a missing final newline is only a warning, an extra
    field after the first data line is ignored (as RecBole's reader does)."""
    rows = clicks(days=3) + clicks(days=3, t0=T0 + 10 * 86_400, sid=100)  # days 3..9 have no session
    rows = [r.replace("\t1\t", "\t𝄞 ñ\t").replace("\t2\t", "\t" + "x" * 3000 + "\t") for r in rows]
    rows += [rows[-1]] * 3 + [f"9999\t{k % 8 + 1}\t{T0 + 86_400 + k}" for k in range(3000)]
    rows[5] += "\tignored"  # a later line's extra field: RecBole's reader ignores it
    with caplog.at_level(logging.WARNING):
        prepared = prepare(tmp_path, good_inter(rows).rstrip("\n"))
    assert prepared.dataset.n_days == 13
    assert "day(s) have no session" in caplog.text and "does not end with a newline" in caplog.text
    tokens = set(prepared.dataset.field2id_token[prepared.dataset.iid_field])
    assert {"𝄞 ñ", "x" * 3000} <= tokens
    assert int(prepared.train.inter_feat["item_length"].max()) == prepared.dataset.max_item_list_len


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    value=st.one_of(st.text(max_size=12), st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70)),
    column=st.sampled_from([0, 1, 2]),
)
def test_any_corrupt_field_is_refused_cleanly_or_handled(value: object, column: int, tmp_path: Path) -> None:
    """One field of one click replaced by anything: a processed data set, or the package's own error (never one from
    pandas or torch)."""
    rows = clicks()
    fields = rows[7].split("\t")
    fields[column] = str(value).replace("\t", " ").replace("\n", " ").replace("\r", " ")
    rows[7] = "\t".join(fields)
    case = tmp_path / f"case{abs(hash((str(value), column)))}"
    try:
        prepared = prepare(case, good_inter(rows))
    except (AtomicFileError, DataSplitError) as err:
        assert "hostile" in str(err)
    else:
        assert len(prepared.train) > 0


# --- atomic writes of reports ---------------------------------------------------------------------------------------
def test_atomic_path_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper" / "results.csv"
    write_atomic_text(target, "old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old\n" and sorted(p.name for p in target.parent.iterdir()) == ["results.csv"]
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "fresh" / "a.txt") as tmp:
        raise RuntimeError("interrupted")
    assert not (tmp_path / "fresh").exists()  # the folder made for it is gone too


def test_sweep_plot_is_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    spec = SimpleNamespace(metric="Recall@20", model="TASRec", dataset="sample")
    path = tmp_path / "valid_curves.png"
    plot_curves(path, [], spec)
    assert path.read_bytes().startswith(b"\x89PNG")
    good = path.read_bytes()

    def failing_savefig(self: Figure, fname: Path, **kwargs: object) -> None:
        Path(fname).write_bytes(b"\x89PNG half")
        raise OSError("No space left on device")

    monkeypatch.setattr(Figure, "savefig", failing_savefig)
    with pytest.raises(OSError, match="No space"):
        plot_curves(path, [], spec)
    assert path.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["valid_curves.png"]
