"""The day grid: ``day_start`` (hours after midnight UTC, or a time zone's midnight) and the small-split warning."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recbole_tasrec.config import Config
from recbole_tasrec.data import TASRecDataset
from recbole_tasrec.settings import check, parse_value
from tests.conftest import small_settings
from tests.test_dataset import DAY, make_log


def utc(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").timestamp())


def session_days(tmp_path: Path, starts: list[str], **settings: object) -> tuple[TASRecDataset, list[int]]:
    """A log of two-click sessions (items 1, 2, a minute apart) starting at ``starts`` (UTC); the data set and
    each session's day, in the order of ``starts``."""
    rows = [(sid, item, utc(start) + 60 * k) for sid, start in enumerate(starts, 1) for k, item in enumerate((1, 2))]
    name = f"grid{len(list(tmp_path.iterdir()))}"
    make_log(tmp_path, name, rows)
    config = Config(
        "TASRec", name, config_dict=small_settings(tmp_path, tmp_path / "runs", min_item_clicks=1, **settings)
    )
    dataset = TASRecDataset(config)
    index = dataset.field2id_token[dataset.uid_field]
    by_token = dict(zip(index[1:].astype(int).tolist(), dataset.session_day[1:].tolist(), strict=True))
    return dataset, [by_token[sid] for sid in range(1, len(starts) + 1)]


AROUND_MIDNIGHT = [
    "2024-01-01 00:30",
    "2024-01-01 03:59",  # its second click is at 04:00: a session keeps the day of its first click
    "2024-01-01 04:00",
    "2024-01-01 18:59",
    "2024-01-01 19:00",
    "2024-01-02 03:00",
    "2024-01-02 05:00",
    "2024-01-03 20:00",
    "2024-01-04 12:00",
]


@pytest.mark.parametrize(
    ("day_start", "origin", "days"),
    [
        (0, "2024-01-01 00:00", [0, 0, 0, 0, 0, 1, 1, 2, 3]),
        (4, "2023-12-31 04:00", [0, 0, 1, 1, 1, 1, 2, 3, 4]),  # days begin at 04:00 UTC
        (-5, "2023-12-31 19:00", [0, 0, 0, 0, 1, 1, 1, 3, 3]),  # days begin at 19:00 UTC the evening before
        (1.5, "2023-12-31 01:30", [0, 1, 1, 1, 1, 2, 2, 3, 4]),
    ],
)
def test_an_hour_offset_moves_every_boundary(tmp_path: Path, day_start: float, origin: str, days: list[int]) -> None:
    dataset, got = session_days(tmp_path, AROUND_MIDNIGHT, day_start=day_start)
    assert got == days
    assert dataset.day_origin == utc(origin) and dataset.n_days == days[-1] + 1


SPRING_FORWARD = [  # Amsterdam: 02:00 CET -> 03:00 CEST on 31 March 2024 (01:00 UTC), a 23-hour day
    "2024-03-29 22:59",  # 23:59 CET, 29 March
    "2024-03-29 23:00",  # 00:00 CET, 30 March
    "2024-03-30 22:59",  # 23:59 CET, 30 March
    "2024-03-30 23:00",  # 00:00 CET, 31 March
    "2024-03-31 01:30",  # 03:30 CEST
    "2024-03-31 21:59",  # 23:59 CEST, 31 March
    "2024-03-31 22:00",  # 00:00 CEST, 1 April
    "2024-03-31 22:30",
    "2024-04-01 22:00",  # 00:00 CEST, 2 April
]
FALL_BACK = [  # Amsterdam: 03:00 CEST -> 02:00 CET on 27 October 2024 (01:00 UTC), a 25-hour day
    "2024-10-25 21:59",  # 23:59 CEST, 25 October
    "2024-10-25 22:00",  # 00:00 CEST, 26 October
    "2024-10-26 22:00",  # 00:00 CEST, 27 October
    "2024-10-27 00:30",  # 02:30 CEST
    "2024-10-27 01:30",  # 02:30 CET, the same local time again
    "2024-10-27 22:59",  # 23:59 CET, 27 October
    "2024-10-27 23:00",  # 00:00 CET, 28 October
    "2024-10-28 12:00",
    "2024-10-29 12:00",
]


@pytest.mark.parametrize(
    ("starts", "span", "origin", "days"),
    [
        (SPRING_FORWARD, 1, "2024-03-28 23:00", [0, 1, 1, 2, 2, 2, 3, 3, 4]),
        (SPRING_FORWARD, 2, "2024-03-28 23:00", [0, 0, 0, 1, 1, 1, 1, 1, 2]),  # two local calendar days a day
        (FALL_BACK, 1, "2024-10-24 22:00", [0, 1, 2, 2, 2, 2, 3, 3, 4]),
    ],
)
def test_a_time_zone_puts_boundaries_at_local_midnight_across_daylight_saving(
    tmp_path: Path, starts: list[str], span: int, origin: str, days: list[int]
) -> None:
    dataset, got = session_days(tmp_path, starts, day_start="Europe/Amsterdam", day_span=span)
    assert got == days
    assert dataset.day_origin == utc(origin)
    # a fixed offset of one hour (CET all year) gets the summer-time days wrong: the zone is not an offset
    assert session_days(tmp_path, starts, day_start=-1, day_span=span)[1] != days


def split_samples(dataset: TASRecDataset) -> list[dict[str, torch.Tensor]]:
    return [{field: part.inter_feat[field] for field in part.inter_feat.columns} for part in dataset.build()]


def test_default_utc_and_the_zone_utc_give_the_same_data_set(data_dir: Path, tmp_path: Path) -> None:
    """``day_start: 0`` (the default) is the grid of midnight UTC; written as 0.0 or as the zone UTC nothing
    changes, and the zone Etc/GMT-4 (UTC+4, POSIX signs) is ``day_start: -4``."""
    built = {}
    for value in (None, 0.0, "UTC", -4, "Etc/GMT-4"):
        extra = {} if value is None else {"day_start": value}
        dataset = TASRecDataset(Config("TASRec", "tiny", config_dict=small_settings(data_dir, tmp_path, **extra)))
        built[value] = (dataset.day_origin, dataset.session_day, split_samples(dataset))
    for value in (0.0, "UTC"):
        assert built[value][0] == built[None][0]
        assert np.array_equal(built[value][1], built[None][1])
        for ours, default in zip(built[value][2], built[None][2], strict=True):
            assert ours.keys() == default.keys() and all(torch.equal(ours[k], default[k]) for k in ours)
    first_click = pd.read_csv(data_dir / "tiny" / "tiny.inter", sep="\t").iloc[:, 2].min()
    assert built[-4][0] == built["Etc/GMT-4"][0] and built[-4][0] % DAY == 20 * 3600  # 00:00 at UTC+4
    assert built[-4][0] <= first_click < built[-4][0] + DAY
    assert np.array_equal(built[-4][1], built["Etc/GMT-4"][1])


def test_a_small_split_is_warned_about_once_naming_the_settings(tmp_path: Path, caplog) -> None:
    dataset, _ = session_days(tmp_path, AROUND_MIDNIGHT)
    with caplog.at_level(logging.WARNING):
        train, valid, test = dataset.build()
    warnings = [r.getMessage() for r in caplog.records if "split has only" in r.getMessage()]
    sizes = {"train": len(train), "valid": len(valid), "test": len(test)}
    assert sizes == {"train": 6, "valid": 2, "test": 1}  # day 3 tests; of the 8 sessions before, the last 2 validate
    assert sorted(m.split()[1] for m in warnings) == ["test", "train", "valid"]  # one each
    test_warning = next(m for m in warnings if m.startswith("the test split"))
    assert "only 1 sample (11.1 % of 9)" in test_warning
    assert all(key in test_warning for key in ("test_day_ratio", "valid_session_ratio", "day_span", "day_start"))


def test_a_split_under_five_percent_is_warned_about(data_dir: Path, tmp_path: Path, caplog) -> None:
    """The tiny set's splits are large enough by default; a validation ratio of 1 % leaves it under 5 %."""
    for ratio, warned in ((0.2, []), (0.01, ["valid"])):
        settings = small_settings(data_dir, tmp_path, valid_session_ratio=ratio)
        dataset = TASRecDataset(Config("TASRec", "tiny", config_dict=settings))
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            dataset.build()
        assert [r.getMessage().split()[1] for r in caplog.records if "split has only" in r.getMessage()] == warned


@pytest.mark.parametrize("value", [4, -5, 5.5, 0, "Europe/Amsterdam", "America/New_York", "UTC"])
def test_day_start_accepts_hours_and_zone_names(value: object) -> None:
    check({"day_start": value})


@pytest.mark.parametrize("value", [24, -24, float("nan"), True, "Mars/Olympus", "Europe", "../etc/passwd", "", None])
def test_day_start_refuses_anything_else_naming_what_it_accepts(value: object) -> None:
    with pytest.raises(ValueError, match="day_start must be a number of hours > -24 and < 24, or an IANA time zone"):
        check({"day_start": value})


@pytest.mark.parametrize(("text", "value"), [("-5", -5), ("4.5", 4.5), ("Europe/Amsterdam", "Europe/Amsterdam")])
def test_day_start_from_the_command_line(text: str, value: object) -> None:
    assert parse_value("day_start", text) == value and type(parse_value("day_start", text)) is type(value)
