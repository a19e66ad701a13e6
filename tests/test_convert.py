"""Tests for recbole_tasrec.data.convert: small hand-written logs with known answers, the real
Diginetica sample, and every bad-input path (clear error, nothing written)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from calendar import timegm
from pathlib import Path

import pandas as pd
import pytest

from recbole_tasrec.data import raw_log
from recbole_tasrec.data.convert import (
    INTER_HEADER,
    ConversionError,
    convert_aotm,
    convert_csv,
    convert_diginetica,
    convert_retailrocket,
    main,
    write_inter,
)

SAMPLE_DIR = Path(__file__).resolve().parents[1].parent / "shared/data/diginetica-sample"
PROJECT_ROOT = Path(__file__).resolve().parents[1]

T0 = 1_600_000_000  # 2020-09-13 12:26:40 UTC
DAY1 = timegm((2016, 1, 1, 0, 0, 0))  # 2016-01-01 00:00 UTC
DAY2 = DAY1 + 86_400


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def rows(path: Path) -> list[list[str]]:
    """The .inter file's data rows as raw strings, after checking the exact header."""
    header, *lines = path.read_text().splitlines()
    assert header == INTER_HEADER
    return [line.split("\t") for line in lines]


# --------------------------------------------------------------------------- retailrocket

RETAILROCKET = "\n".join(
    [
        "timestamp,visitorid,event,itemid,transactionid",
        f"{(T0 + 61 * 60) * 1000},v1,view,12,",  # 31 min after v1's previous view
        f"{T0 * 1000 + 60_117},v2,view,20,",
        f"{T0 * 1000},v1,view,10,",
        f"{(T0 + 30 * 60) * 1000 + 500},v1,addtocart,11,",
        f"{(T0 + 30 * 60) * 1000},v1,view,11,",  # exactly 30 min after v1's first view
        f"{T0 * 1000 + 120_000},v2,transaction,20,5",
    ]
)


def test_retailrocket_sessions_cut_after_more_than_30_minutes(tmp_path: Path) -> None:
    summary = convert_retailrocket(write(tmp_path / "events.csv", RETAILROCKET), tmp_path / "out")
    assert summary.path == tmp_path / "out/retailrocket/retailrocket.inter"
    assert rows(summary.path) == [
        ["1", "10", f"{T0}.000"],
        ["1", "11", f"{T0 + 1800}.000"],  # a 30-minute gap stays in the session
        ["2", "20", f"{T0 + 60}.117"],  # ms precision kept, 3 decimals for all rows
        ["3", "12", f"{T0 + 3660}.000"],  # a 31-minute gap starts a new one
    ]
    assert (summary.n_clicks, summary.n_sessions, summary.n_items, summary.n_dropped) == (4, 3, 4, 0)


@pytest.mark.parametrize(("gap", "n_sessions"), [(29, 4), (30, 3), (31, 2)])
def test_retailrocket_session_gap_is_configurable(tmp_path: Path, gap: float, n_sessions: int) -> None:
    events = write(tmp_path / "events.csv", RETAILROCKET)
    summary = convert_retailrocket(events, tmp_path / "out", name="rr", session_gap_minutes=gap)
    assert summary.n_sessions == n_sessions
    assert summary.path == tmp_path / "out/rr/rr.inter"


def test_retailrocket_drops_views_without_visitor_or_item(tmp_path: Path) -> None:
    text = RETAILROCKET + f"\n{T0 * 1000 + 10},,view,13,\n{T0 * 1000 + 20},v1,view,,\n"
    summary = convert_retailrocket(write(tmp_path / "events.csv", text), tmp_path / "out")
    assert [r[:2] for r in rows(summary.path)] == [["1", "10"], ["1", "11"], ["2", "20"], ["3", "12"]]
    assert summary.n_dropped == 2


def test_retailrocket_without_views_is_an_error(tmp_path: Path) -> None:
    events = write(tmp_path / "events.csv", "timestamp,visitorid,event,itemid,transactionid\n1,v,addtocart,2,\n")
    with pytest.raises(ConversionError, match=r"no 'view' events.*'addtocart'"):
        convert_retailrocket(events, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- diginetica

DIGINETICA_ROWS = [
    "2;NA;200;5000;2016-01-02",
    "1;NA;101;90000;2016-01-01",
    "1;NA;100;1000;2016-01-01",
    "2;7;201;2000;2016-01-02",
    "3;NA;301;600000;2016-01-02",  # session 3 crossed midnight: its day is still its first click's
    "3;NA;300;500;2016-01-01",
]
DIGINETICA_EXPECTED = [
    ["1", "300", f"{DAY1}.500"],  # session 3 starts first (00:00:00.5)
    ["1", "301", f"{DAY1 + 600}.000"],  # not DAY2 + 600
    ["2", "100", f"{DAY1 + 1}.000"],  # ordered by timeframe, not by log order
    ["2", "101", f"{DAY1 + 90}.000"],
    ["3", "201", f"{DAY2 + 2}.000"],
    ["3", "200", f"{DAY2 + 5}.000"],
]


@pytest.mark.parametrize(
    "header",
    ["sessionId;userId;itemId;timeframe;eventdate", "session_id;user_id;item_id;timeframe;eventdate"],
)
def test_diginetica_orders_by_timeframe_and_keeps_the_first_clicks_day(tmp_path: Path, header: str) -> None:
    raw = write(tmp_path / "train-item-views.csv", "\n".join([header, *DIGINETICA_ROWS]) + "\n")
    summary = convert_diginetica(raw, tmp_path / "out")
    assert summary.path == tmp_path / "out/diginetica/diginetica.inter"
    assert rows(summary.path) == DIGINETICA_EXPECTED
    assert str(summary) == (f"wrote {summary.path}: 6 clicks, 3 sessions, 6 items, 2016-01-01 .. 2016-01-02")


FIXTURES = Path(__file__).resolve().parent / "fixtures" / "diginetica"
MARCH1 = timegm((2016, 3, 1, 0, 0, 0))
#: The committed fixture's expected atomic rows, worked out by hand: (session, item, seconds after 2016-03-01).
#: Sessions renumbered by start time; clicks by timeframe (ms); session 12 crosses midnight and keeps its first
#: click's date as the base (86.41e6 ms after 2016-03-01, not after 2016-03-02); repeated items stay.
FIXTURE_EXPECTED = [
    (1, 501, 0), (1, 502, 30), (1, 501, 90),  # raw session 10
    (2, 505, 4), (2, 504, 5), (2, 503, 12),  # raw 11, user 42, out of order in the file
    (3, 506, 86_390), (3, 507, 86_410), (3, 501, 86_500),  # raw 12, across midnight
    (4, 502, 86_401), (4, 503, 86_402), (4, 508, 86_402.5), (4, 504, 86_403),  # raw 13
    (5, 509, 86_460), (5, 509, 86_461), (5, 510, 86_470),  # raw 14
    (6, 501, 172_800.1), (6, 502, 172_800.2), (6, 503, 172_800.3), (6, 504, 172_800.4), (6, 505, 172_800.5),
    (7, 511, 176_400), (7, 512, 176_500),  # raw 16
    (8, 513, 259_200), (8, 513, 259_200.125), (8, 501, 259_200.25),  # raw 17
    (9, 514, 302_400), (9, 502, 302_400.999), (9, 516, 302_401), (9, 515, 302_460),  # raw 18, noon
]  # fmt: skip


@pytest.mark.parametrize("name", ["handmade-views.csv", "handmade-views-camel.csv"])
def test_diginetica_fixture_both_headers(tmp_path: Path, name: str) -> None:
    """A committed, hand-written Diginetica file (snake_case and camelCase headers): exact output."""
    summary = convert_diginetica(FIXTURES / name, tmp_path)
    assert str(summary).endswith("30 clicks, 9 sessions, 16 items, 2016-03-01 .. 2016-03-04")
    expected = [[str(s), str(i), f"{MARCH1 + offset:.3f}"] for s, i, offset in FIXTURE_EXPECTED]
    assert rows(summary.path) == expected


def test_real_diginetica_sample(tmp_path: Path) -> None:
    sample = SAMPLE_DIR / "train-item-views.csv"
    if not sample.exists():
        pytest.skip(f"Diginetica sample not found at {sample} (shared data is not checked out)")
    summary = convert_diginetica(sample, tmp_path)
    assert (summary.n_clicks, summary.n_sessions, summary.n_items) == (12_391, 2_986, 7_139)
    assert (f"{summary.first:%Y-%m-%d}", f"{summary.last:%Y-%m-%d}") == ("2016-01-03", "2016-06-01")
    assert summary.n_dropped == 0
    assert str(summary).endswith("12,391 clicks, 2,986 sessions, 7,139 items, 2016-01-03 .. 2016-06-01")
    inter = pd.read_csv(summary.path, sep="\t", dtype={"item_id:token": str})
    sessions, times = inter["session_id:token"], inter["timestamp:float"]
    assert sessions.is_monotonic_increasing
    assert sessions.iloc[0] == 1 and sessions.iloc[-1] == 2_986 and sessions.nunique() == 2_986
    assert times.groupby(sessions).is_monotonic_increasing.all()
    assert times.groupby(sessions).first().is_monotonic_increasing  # sorted by session start
    assert inter["item_id:token"].nunique() == 7_139


# --------------------------------------------------------------------------- aotm

AOTM_PLAYLISTS = [
    {
        "mix_id": 7,
        "playlist": [[["Artist A", "Song 1"], "SOAAA"], [["Artist B", 'Say "Hi"'], None]],
        "timestamp": "2005-03-27T10:53:00",
    },
    {"mix_id": 3, "playlist": [[["C", "x"], "SOCCC"]], "timestamp": "2005-03-26T00:00:00"},
    {"mix_id": 9, "playlist": [], "timestamp": "2005-01-01T00:00:00"},  # no tracks: no session
]


def test_aotm_session_rec_csv(tmp_path: Path) -> None:
    raw = write(
        tmp_path / "playlists-aotm.csv",
        "UserId\tSessionId\tItemId\tTime\tArtistId\nu1\t5\t100\t1000\ta1\nu1\t5\t101\t990\ta2\nu2\t4\t100\t995\ta1\n",
    )
    summary = convert_aotm(raw, tmp_path / "out")
    assert summary.path == tmp_path / "out/aotm/aotm.inter"
    assert rows(summary.path) == [["1", "101", "990"], ["1", "100", "1000"], ["2", "100", "995"]]


@pytest.mark.parametrize("suffix", [".json.gz", ".json"])
def test_aotm_original_json(tmp_path: Path, suffix: str) -> None:
    raw = tmp_path / f"aotm2011_playlists{suffix}"
    payload = json.dumps(AOTM_PLAYLISTS).encode()
    raw.write_bytes(gzip.compress(payload) if suffix.endswith(".gz") else payload)
    summary = convert_aotm(raw, tmp_path / "out", name="aotm2011")
    t3, t7 = timegm((2005, 3, 26, 0, 0, 0)), timegm((2005, 3, 27, 10, 53, 0))
    inter = pd.read_csv(summary.path, sep="\t", dtype=str)  # the reader RecBole uses understands the quoting
    assert inter.values.tolist() == [
        ["1", "SOCCC", str(t3)],
        ["2", "SOAAA", str(t7)],  # track k gets the playlist's time + k seconds
        ["2", 'Artist B - Say "Hi"', str(t7 + 1)],  # no MSD id: "artist - title"
    ]
    assert (summary.n_sessions, summary.n_dropped) == (2, 0)


def test_aotm_malformed_json_entry_is_an_error(tmp_path: Path) -> None:
    raw = write(tmp_path / "p.json", json.dumps([{"playlist": [["just a title"]], "timestamp": "2005-01-01"}]))
    with pytest.raises(ConversionError, match=r"unexpected playlist entry \['just a title'\]"):
        convert_aotm(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- csv and write_inter

CSV_TIMES = {
    "s": ["1000", "1001.25", "990"],
    "ms": ["1000000", "1001250", "990000"],
    "iso": ["1970-01-01T00:16:40", "1970-01-01 00:16:41.250Z", "1970-01-01T01:16:30+01:00"],
}


@pytest.mark.parametrize("unit", sorted(CSV_TIMES))
def test_csv_time_units(tmp_path: Path, unit: str) -> None:
    a, b, c = CSV_TIMES[unit]
    raw = write(tmp_path / "my-clicks.csv", f"user;sess;item;when\nu;s1;i1;{a}\nu;s1;i2;{b}\nu;s2;i1;{c}\n")
    summary = convert_csv(
        raw, tmp_path / "out", session_col="sess", item_col="item", time_col="when", time_unit=unit, sep=";"
    )
    assert summary.path == tmp_path / "out/my-clicks/my-clicks.inter"  # name defaults to the stem
    assert rows(summary.path) == [["1", "i1", "990.000"], ["2", "i1", "1000.000"], ["2", "i2", "1001.250"]]


def test_csv_drops_rows_with_missing_values_and_counts_them(tmp_path: Path) -> None:
    raw = write(tmp_path / "c.csv", "s,i,t\na,x,5\n,y,6\nb,,7\nb,z,\nb,w,8\n")
    summary = convert_csv(raw, tmp_path, session_col="s", item_col="i", time_col="t")
    assert rows(summary.path) == [["1", "x", "5"], ["2", "w", "8"]]
    assert summary.n_dropped == 3
    assert str(summary).endswith("(dropped 3 rows with a missing session, item or time)")


def test_write_inter_ties_keep_log_order(tmp_path: Path) -> None:
    clicks = pd.DataFrame(
        {
            "session_id": ["b", "a", "b", "a", "c"],
            "item_id": ["1", "2", "3", "4", "5"],
            "timestamp": [9, 9, 9, 9, 8],
        }
    )
    summary = write_inter(clicks, tmp_path, "ties")
    # c starts first; b and a start together, b comes first in the log; clicks at equal times keep log order
    assert rows(summary.path) == [
        ["1", "5", "8"],
        ["2", "1", "9"],
        ["2", "3", "9"],
        ["3", "2", "9"],
        ["3", "4", "9"],
    ]
    assert summary.first == summary.last.replace(second=8)


@pytest.mark.parametrize(
    ("times", "written"),
    [([5, -3, 7], ["-3", "5", "7"]), ([1.5, -1.5, 2.0004, 2.0006], ["-1.500", "1.500", "2.000", "2.001"])],
)
def test_write_inter_time_format(tmp_path: Path, times: list[float], written: list[str]) -> None:
    clicks = pd.DataFrame({"session_id": range(len(times)), "item_id": "i", "timestamp": times})
    assert [r[2] for r in rows(write_inter(clicks, tmp_path, "t").path)] == written


def test_big_input_is_read_in_chunks_with_a_progress_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    header = "sessionId;userId;itemId;timeframe;eventdate"
    raw = write(tmp_path / "train-item-views.csv", "\n".join([header, *DIGINETICA_ROWS]) + "\n")
    convert_diginetica(raw, tmp_path / "small")
    assert capsys.readouterr().err == ""  # small input: no bar
    monkeypatch.setattr(raw_log, "PROGRESS_MIN_BYTES", 0)
    monkeypatch.setattr(raw_log, "CHUNK_ROWS", 2)
    summary = convert_diginetica(raw, tmp_path / "big")
    assert "reading train-item-views.csv" in capsys.readouterr().err
    assert rows(summary.path) == DIGINETICA_EXPECTED


def test_rerun_replaces_the_file(tmp_path: Path) -> None:
    raw = write(tmp_path / "c.csv", "s,i,t\na,x,5\n")
    convert_csv(raw, tmp_path, session_col="s", item_col="i", time_col="t")
    raw.write_text("s,i,t\na,y,6\n")
    summary = convert_csv(raw, tmp_path, session_col="s", item_col="i", time_col="t")
    assert rows(summary.path) == [["1", "y", "6"]]
    assert sorted(p.name for p in summary.path.parent.iterdir()) == ["c.inter"]  # no temp file left


# --------------------------------------------------------------------------- bad input

CONVERTERS = {
    "retailrocket": convert_retailrocket,
    "diginetica": convert_diginetica,
    "aotm": convert_aotm,
    "csv": lambda path, out: convert_csv(path, out, session_col="s", item_col="i", time_col="t"),
}


@pytest.mark.parametrize("fmt", sorted(CONVERTERS))
def test_missing_input(tmp_path: Path, fmt: str) -> None:
    with pytest.raises(ConversionError, match="input file not found: .*nope.csv; pass --input"):
        CONVERTERS[fmt](tmp_path / "nope.csv", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("fmt", "text", "message"),
    [
        ("diginetica", "", "input file is empty"),
        ("retailrocket", "timestamp,visitorid,event,itemid,transactionid\n", "has a header but no rows"),
        ("aotm", "[]", "has no playlists"),
        ("csv", "s,i,t\n,,\n", "no usable clicks: all 1 rows miss"),
    ],
)
def test_empty_input(tmp_path: Path, fmt: str, text: str, message: str) -> None:
    raw = write(tmp_path / ("in.json" if fmt == "aotm" else "in.csv"), text)
    with pytest.raises(ConversionError, match=message):
        CONVERTERS[fmt](raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("fmt", "text", "message"),
    [
        (
            "diginetica",
            "sessionId;userId;item;timeframe;eventdate\n1;NA;2;3;2016-01-01\n",
            r"missing column\(s\) 'itemId'; the file has 'sessionId', 'userId', 'item', .*\(or session_id;",
        ),
        (
            "diginetica",
            "sessionId,userId,itemId,timeframe,eventdate\n1,NA,2,3,2016-01-01\n",
            r"Only one column was found: is the separator right \(expected ';'\)\?",
        ),
        ("retailrocket", "timestamp,visitor,event,itemid\n1,2,view,3\n", r"missing column\(s\) 'visitorid'"),
        ("aotm", "UserId\tSessionId\tItem\tTime\n1\t2\t3\t4\n", r"missing column\(s\) 'ItemId'.*json"),
        ("aotm", '[{"playlist": []}]', r"missing column\(s\) 'timestamp'; the file has 'playlist'"),
        ("csv", "session,i,t\na,b,1\n", r"missing column\(s\) 's'; the file has 'session', .*--session-col"),
    ],
)
def test_missing_columns(tmp_path: Path, fmt: str, text: str, message: str) -> None:
    raw = write(tmp_path / ("in.json" if text.startswith("[") else "in.csv"), text)
    with pytest.raises(ConversionError, match=message):
        CONVERTERS[fmt](raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("fmt", "text", "message"),
    [
        (
            "retailrocket",
            "timestamp,visitorid,event,itemid,transactionid\n1000,1,view,2,\nyesterday,1,view,3,\n",
            r"column 'timestamp' has 1 value\(s\) that are not numbers \(milliseconds\), e.g. 'yesterday'",
        ),
        (
            "diginetica",
            "session_id;user_id;item_id;timeframe;eventdate\n1;NA;2;3;2016-13-01\n",
            r"column 'eventdate' .* not YYYY-MM-DD dates, e.g. '2016-13-01'",
        ),
        ("aotm", '[{"playlist": [[["a", "b"], null]], "timestamp": "someday"}]', r"'timestamp'.*'someday'"),
        ("csv", "s,i,t\na,b,2016-01-01\n", r"column 't' .* e.g. '2016-01-01'; .* pick the right --time-unit"),
    ],
)
def test_unparsable_times(tmp_path: Path, fmt: str, text: str, message: str) -> None:
    raw = write(tmp_path / ("in.json" if text.startswith("[") else "in.csv"), text)
    with pytest.raises(ConversionError, match=message):
        CONVERTERS[fmt](raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unreadable_json(tmp_path: Path) -> None:
    raw = write(tmp_path / "p.json.gz", "not gzip")
    with pytest.raises(ConversionError, match="cannot read .*p.json.gz as AotM-2011 JSON"):
        convert_aotm(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_name_and_gap(tmp_path: Path) -> None:
    raw = write(tmp_path / "c.csv", "s,i,t\na,x,5\n")
    with pytest.raises(ConversionError, match="--name must be a plain folder name"):
        convert_csv(raw, tmp_path / "out", session_col="s", item_col="i", time_col="t", name="../x")
    with pytest.raises(ConversionError, match="--session-gap-minutes must be positive"):
        convert_retailrocket(raw, tmp_path / "out", session_gap_minutes=0)
    assert not (tmp_path / "out").exists()


def test_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = write(tmp_path / "c.csv", "s,i,t\na,x,5\n")

    def disk_full(self: pd.DataFrame, path: Path, **kwargs: object) -> None:
        Path(path).write_text("partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)
    with pytest.raises(OSError, match="No space left"):
        convert_csv(raw, tmp_path / "out/nested", session_col="s", item_col="i", time_col="t")
    assert not (tmp_path / "out").exists()


def test_failed_conversion_keeps_the_previous_file(tmp_path: Path) -> None:
    good = write(tmp_path / "c.csv", "s,i,t\na,x,5\n")
    summary = convert_csv(good, tmp_path, session_col="s", item_col="i", time_col="t")
    bad = write(tmp_path / "c2.csv", "s,i,t\na,x,never\n")
    with pytest.raises(ConversionError):
        convert_csv(bad, tmp_path, session_col="s", item_col="i", time_col="t", name="c")
    assert rows(summary.path) == [["1", "x", "5"]]


# --------------------------------------------------------------------------- CLI


def test_main_prints_summary_and_returns_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = write(tmp_path / "c.csv", "sess\titem\tms\na\tx\t5000\n")
    argv = ["csv", "--input", str(raw), "--output-dir", str(tmp_path / "out"), "--name", "demo"]
    argv += [
        "--session-col",
        "sess",
        "--item-col",
        "item",
        "--time-col",
        "ms",
        "--time-unit",
        "ms",
        "--sep",
        "\\t",  # typed as backslash-t on a shell: means tab
    ]
    assert main(argv) == 0
    path = tmp_path / "out/demo/demo.inter"
    assert capsys.readouterr().out == f"wrote {path}: 1 clicks, 1 sessions, 1 items, 1970-01-01 .. 1970-01-01\n"
    assert rows(path) == [["1", "x", "5"]]


def test_main_reports_bad_input_with_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = write(tmp_path / "events.csv", "timestamp,visitorid,event,itemid\n")
    assert main(["retailrocket", "--input", str(raw), "--output-dir", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and "has a header but no rows" in captured.err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # a subprocess
def test_cli_module_error_exits_2_without_traceback(tmp_path: Path) -> None:
    # One subprocess only: importing the package (and RecBole) takes seconds; main() is tested in-process.
    command = [sys.executable, "-m", "recbole_tasrec.data.convert", "diginetica"]
    command += ["--input", str(tmp_path / "missing.csv"), "--output-dir", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert result.returncode == 2
    assert result.stderr.startswith("error: input file not found") and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "out").exists()
