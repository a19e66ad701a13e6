"""Tests for the synthetic drifting session generator and the committed demo set."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recbole_tasrec.data.synthetic import (
    HEADER,
    SECONDS_PER_DAY,
    SyntheticConfig,
    generate,
    main,
    to_inter_bytes,
    write,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "atomic_data" / "sample" / "sample.inter"
COLUMNS = ["session_id", "item_id", "timestamp"]


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    """The committed demo set, parsed (its bytes are checked against the generator separately)."""
    return pd.read_csv(SAMPLE, sep="\t", header=0, names=COLUMNS, dtype="int64")


def _with_days(df: pd.DataFrame, cfg: SyntheticConfig) -> pd.DataFrame:
    return df.assign(day=(df["timestamp"] - cfg.start_timestamp) // SECONDS_PER_DAY)


def _transitions(df: pd.DataFrame) -> pd.DataFrame:
    """Consecutive-click transitions ``i -> j`` (``i != j``) with the day of the click pair."""
    same = df["session_id"].to_numpy()[1:] == df["session_id"].to_numpy()[:-1]
    tr = pd.DataFrame(
        {
            "day": df["day"].to_numpy()[1:][same],
            "i": df["item_id"].to_numpy()[:-1][same],
            "j": df["item_id"].to_numpy()[1:][same],
        }
    )
    return tr[tr["i"] != tr["j"]].reset_index(drop=True)


def _seen_lag_ago(tr: pd.DataFrame, lag: int, first_day: int) -> pd.Series:
    """Per day ``t >= first_day``: share of day ``t``'s transitions also seen on day ``t - lag``."""
    earlier = tr[["day", "i", "j"]].drop_duplicates().assign(day=lambda x: x["day"] + lag, seen=True)
    merged = tr[tr["day"] >= first_day].merge(earlier, on=["day", "i", "j"], how="left")
    return merged["seen"].fillna(False).astype(bool).groupby(merged["day"]).mean()


# --- the committed demo set ----------------------------------------------------------------------------


def test_cli_defaults_reproduce_the_committed_sample_byte_for_byte(tmp_path: Path, capsys) -> None:
    assert SAMPLE.is_file(), "run: uv run python -m recbole_tasrec.data.synthetic"
    assert main(["--output-dir", str(tmp_path)]) == 0
    out = tmp_path / "sample" / "sample.inter"
    assert out.read_bytes() == SAMPLE.read_bytes()
    assert SAMPLE.stat().st_size <= 2_000_000
    line = capsys.readouterr().out.strip()
    assert line.count("\n") == 0
    for part in ("clicks", "sessions", "items", "30 days", "2026-01-01", "2026-01-30", "bytes"):
        assert part in line
    # No temp file left behind by the atomic write.
    assert sorted(p.name for p in out.parent.iterdir()) == ["sample.inter"]


def test_sample_format_and_order(sample: pd.DataFrame) -> None:
    cfg = SyntheticConfig()
    assert SAMPLE.read_bytes().split(b"\n", 1)[0] == HEADER.encode()
    assert HEADER == "session_id:token\titem_id:token\ttimestamp:float"
    sid, ts = sample["session_id"].to_numpy(), sample["timestamp"].to_numpy()
    # Session ids are 1..N, contiguous, in row order.
    assert sid[0] == 1 and np.all(np.diff(sid) >= 0) and np.all(np.diff(sid) <= 1)
    assert sid[-1] == cfg.n_days * cfg.sessions_per_day
    # Sorted by session start, then time (strictly increasing inside a session).
    starts = sample.groupby("session_id")["timestamp"].min().to_numpy()
    assert np.all(np.diff(starts) >= 0)
    within = np.diff(ts)[np.diff(sid) == 0]
    assert np.all(within > 0)
    assert sample["item_id"].between(1, cfg.n_items).all()


def test_sample_sessions_days_and_timestamps(sample: pd.DataFrame) -> None:
    cfg = SyntheticConfig()
    df = _with_days(sample, cfg)
    lengths = df.groupby("session_id").size()
    assert (lengths >= 2).all() and lengths.max() <= cfg.max_session_length
    assert 4.5 <= lengths.mean() <= 5.5  # mean_session_length = 5 (slightly less after the cap of 20)
    t0 = cfg.start_timestamp
    assert t0 == int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp())
    assert df["timestamp"].min() >= t0 and df["timestamp"].max() < t0 + cfg.n_days * SECONDS_PER_DAY
    # A session stays in the UTC day it starts in; every day has exactly sessions_per_day sessions.
    assert (df.groupby("session_id")["day"].nunique() == 1).all()
    per_day = df.groupby("day")["session_id"].nunique()
    assert len(per_day) == cfg.n_days >= 20 and (per_day == cfg.sessions_per_day).all()
    utc_days = pd.to_datetime(df["timestamp"], unit="s", utc=True).dt.date.nunique()
    assert utc_days >= 20
    # Gaps between clicks: seconds to minutes.
    gaps = np.diff(df["timestamp"].to_numpy())[np.diff(df["session_id"].to_numpy()) == 0]
    assert gaps.min() >= 1 and gaps.max() <= 900 and 20 <= np.median(gaps) <= 120


def test_sample_survives_the_paper_filter(sample: pd.DataFrame) -> None:
    # Measured: 1,481 distinct items, 1,349 (91 %) with >= 5 clicks, holding ~99 % of the clicks.
    counts = sample["item_id"].value_counts()
    assert len(counts) >= 1_400
    assert (counts >= 5).mean() >= 0.85
    assert counts[counts >= 5].sum() / counts.sum() >= 0.97


def test_transitions_drift_day_to_day(sample: pd.DataFrame) -> None:
    cfg = SyntheticConfig()
    tr = _transitions(_with_days(sample, cfg))
    lag = {k: _seen_lag_ago(tr, k, first_day=10) for k in (1, 3, 10)}
    # Measured on the demo set (41,600 transitions; days 10..29): share also seen 1 day before 0.289
    # (per day 0.236..0.327), 3 days before 0.122, 10 days before 0.010 (per day 0.003..0.030); smallest
    # per-day gap 0.206. Successor sets live 5 days with staggered phases, so yesterday's graph is
    # informative and a 10-day-old one is stale. (With transition_period=1000, static popularity and
    # immortal items the same measure gives 0.202 / 0.196 / 0.189: these asserts would fail.)
    assert len(lag[1]) == cfg.n_days - 10
    assert lag[1].mean() >= 0.22
    assert lag[10].mean() <= 0.04
    assert lag[1].mean() >= 5 * lag[10].mean()
    assert (lag[1] - lag[10]).min() >= 0.15  # every single day, not just on average
    assert lag[1].mean() > lag[3].mean() > lag[10].mean()  # staleness grows with age


def test_popularity_and_catalogue_drift(sample: pd.DataFrame) -> None:
    cfg = SyntheticConfig()
    df = _with_days(sample, cfg)
    first = set(df.loc[df["day"] < 3, "item_id"])
    last = set(df.loc[df["day"] >= cfg.n_days - 3, "item_id"])
    # Measured: 533 items in the first 3 days, 545 in the last 3; 461 new, 449 gone.
    assert len(last - first) >= 200, "new items must appear later"
    assert len(first - last) >= 200, "early items must fade"
    week1 = df.loc[df["day"] < 7, "item_id"].value_counts()
    week4 = df.loc[df["day"] >= cfg.n_days - 7, "item_id"].value_counts()
    # Measured: 2 of the top 20 items are shared by the first and the last week.
    assert len(set(week1.index[:20]) & set(week4.index[:20])) <= 8


# --- generator properties -----------------------------------------------------------------------------


def test_same_seed_same_bytes_different_seed_different_bytes() -> None:
    cfg = SyntheticConfig(n_items=300, n_days=6, sessions_per_day=80, seed=11)
    a, b = to_inter_bytes(generate(cfg)), to_inter_bytes(generate(cfg))
    assert a == b
    c = to_inter_bytes(generate(SyntheticConfig(n_items=300, n_days=6, sessions_per_day=80, seed=12)))
    assert c != a and c.split(b"\n", 1)[0] == a.split(b"\n", 1)[0]


def test_generate_columns_and_types() -> None:
    df = generate(SyntheticConfig(n_items=50, n_days=2, sessions_per_day=10))
    assert list(df.columns) == COLUMNS
    assert all(df[c].dtype == np.int64 for c in COLUMNS)
    assert df["session_id"].nunique() == 20


def test_start_date_and_knobs_are_honoured(tmp_path: Path) -> None:
    cfg = SyntheticConfig(
        n_items=40,
        n_days=3,
        sessions_per_day=7,
        start_date="2025-12-30",
        max_session_length=4,
        mean_session_length=3.0,
        p_follow=1.0,
        n_categories=1,
    )
    assert cfg.start_date == dt.date(2025, 12, 30)
    path = write(cfg, tmp_path, "tiny")
    assert path == tmp_path / "tiny" / "tiny.inter"
    df = pd.read_csv(path, sep="\t", header=0, names=COLUMNS)
    days = pd.to_datetime(df["timestamp"], unit="s", utc=True).dt.date
    assert set(days) <= {dt.date(2025, 12, 30), dt.date(2025, 12, 31), dt.date(2026, 1, 1)}
    lengths = df.groupby("session_id").size()
    assert lengths.max() <= 4 and lengths.min() >= 2 and len(lengths) == 21
    assert path.read_bytes() == to_inter_bytes(generate(cfg))


def test_tiny_configs_do_not_crash() -> None:
    df = generate(
        SyntheticConfig(
            n_items=2,
            n_days=1,
            sessions_per_day=1,
            n_categories=1,
            mean_session_length=2.0,
            max_session_length=2,
        )
    )
    assert len(df) == 2 and df["session_id"].eq(1).all()
    df = generate(
        SyntheticConfig(
            n_items=3,
            n_days=40,
            sessions_per_day=3,
            n_categories=3,
            mean_item_lifetime=3.0,
            transition_period=1,
        )
    )
    assert df["session_id"].nunique() == 120


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"n_items": 1}, "n_items must be >= 2"),
        ({"n_items": 10.5}, "n_items must be an integer"),
        ({"n_days": 0}, "n_days must be >= 1"),
        ({"sessions_per_day": 0}, "sessions_per_day must be >= 1"),
        ({"p_follow": -0.1}, r"p_follow must be in \[0, 1\]"),
        ({"p_follow": 1.5}, r"p_follow must be in \[0, 1\]"),
        ({"p_follow": float("nan")}, "p_follow must be a finite number"),
        ({"mean_session_length": 1.5}, "mean_session_length must be in"),
        ({"mean_session_length": 30.0}, "mean_session_length must be in"),
        ({"max_session_length": 1}, "max_session_length must be >= 2"),
        ({"transition_period": 0}, "transition_period must be >= 1"),
        ({"n_successors": 0}, "n_successors must be >= 1"),
        ({"n_categories": 0}, "n_categories must be >= 1"),
        ({"mean_item_lifetime": 2.0}, "mean_item_lifetime must be >= 3"),
        ({"popularity_drift": -1.0}, "popularity_drift must be >= 0"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"start_date": "2026-13-01"}, "start_date must be an ISO date"),
        ({"start_date": 20260101}, "start_date must be a datetime.date"),
    ],
)
def test_bad_knobs_raise_value_error(knobs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SyntheticConfig(**knobs)


def test_cli_rejects_bad_knobs_and_bad_names(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--output-dir", str(tmp_path), "--p-follow", "2"])
    assert exc.value.code == 2
    assert "p_follow must be in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "sample").exists()
    with pytest.raises(ValueError, match="plain file stem"):
        write(SyntheticConfig(n_items=10, n_days=1, sessions_per_day=2), tmp_path, "a/b")


def test_cli_flags_reach_the_config(tmp_path: Path, capsys) -> None:
    argv = [
        "--output-dir",
        str(tmp_path),
        "--name",
        "mini",
        "--n-items",
        "30",
        "--n-days",
        "2",
        "--sessions-per-day",
        "5",
        "--seed",
        "3",
        "--start-date",
        "2024-02-28",
    ]
    assert main(argv) == 0
    path = tmp_path / "mini" / "mini.inter"
    cfg = SyntheticConfig(n_items=30, n_days=2, sessions_per_day=5, seed=3, start_date="2024-02-28")
    assert path.read_bytes() == to_inter_bytes(generate(cfg))
    out = capsys.readouterr().out
    assert "10 sessions" in out and "2024-02-28 .. 2024-02-29" in out
