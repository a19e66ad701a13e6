"""TASRecDataset: filters, days, the day split, prefix samples and the per-day clicks (paper 3.1)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from recbole.data.dataset import Dataset, SequentialDataset

from recbole_tasrec.config import Config
from recbole_tasrec.data import TASRecDataset
from recbole_tasrec.data.dataset import DataSplitError, n_test_days
from recbole_tasrec.data.synthetic import SyntheticConfig, write
from tests.conftest import TinySplit, small_settings

DAY = 86_400


@pytest.fixture(scope="module")
def built(tiny_split: Callable[..., TinySplit]):
    split = tiny_split()
    return split.config, split.data.dataset, (split.data.train, split.data.valid, split.data.test)


def raw_after_filters(data_dir: Path, name: str, min_len: int = 2, min_clicks: int = 5) -> pd.DataFrame:
    """The paper's filters written independently of the data set class."""
    df = pd.read_csv(data_dir / name / f"{name}.inter", sep="\t")
    df.columns = ["session", "item", "time"]
    df = df[df.groupby("session")["item"].transform("size") >= min_len]
    df = df[df.groupby("item")["session"].transform("size") >= min_clicks]
    return df[df.groupby("session")["item"].transform("size") >= min_len]


def sample_frame(dataset, part) -> pd.DataFrame:
    """One row per sample: raw session token, day, target item id."""
    tokens = dataset.field2id_token[dataset.uid_field]
    return pd.DataFrame(
        {
            "session": tokens[part.inter_feat[dataset.uid_field].numpy()].astype(int),
            "day": part.inter_feat[dataset.day_field].numpy().astype(int),
            "item": part.inter_feat[dataset.iid_field].numpy(),
            "length": part.inter_feat[dataset.item_list_length_field].numpy(),
        }
    )


def test_filters_follow_srgnn_order(data_dir: Path, built) -> None:
    _, dataset, _ = built
    expected = raw_after_filters(data_dir, "tiny")
    assert len(dataset.day_clicks.item) == len(expected)
    assert dataset.user_num - 1 == expected["session"].nunique()
    assert dataset.item_num - 1 == expected["item"].nunique()


def test_every_sample_has_its_sessions_day(data_dir: Path, built) -> None:
    _, dataset, parts = built
    raw = raw_after_filters(data_dir, "tiny")
    start = raw.groupby("session")["time"].min()
    first_raw_click = pd.read_csv(data_dir / "tiny" / "tiny.inter", sep="\t").iloc[:, 2].min()
    origin = np.floor(first_raw_click / DAY) * DAY
    expected_day = ((start - origin) // DAY).astype(int)
    for part in parts:
        frame = sample_frame(dataset, part)
        assert (frame["day"].to_numpy() == expected_day.loc[frame["session"]].to_numpy()).all()


def test_split_by_day_never_cuts_a_session(built) -> None:
    config, dataset, (train, valid, test) = built
    frames = [sample_frame(dataset, part) for part in (train, valid, test)]
    sessions = [set(f["session"]) for f in frames]
    assert not (sessions[0] & sessions[1]) and not (sessions[0] & sessions[2]) and not (sessions[1] & sessions[2])
    assert dataset.n_days == 14 and dataset.n_train_days == 14 - 2  # 14 / 6 = 2.33 -> 2 test days
    assert frames[2]["day"].min() >= dataset.n_train_days
    assert frames[0]["day"].max() < dataset.n_train_days and frames[1]["day"].max() < dataset.n_train_days


def test_validation_is_the_last_fifth_of_training_sessions(data_dir: Path, built) -> None:
    _, dataset, _ = built
    split = dataset.session_split
    train_or_valid = np.flatnonzero((split == 0) | (split == 1))
    valid = np.flatnonzero(split == 1)
    assert len(valid) == round(0.2 * len(train_or_valid))
    raw = raw_after_filters(data_dir, "tiny")
    start = raw.groupby("session")["time"].min()
    tokens = dataset.field2id_token[dataset.uid_field]
    valid_starts = start.loc[tokens[valid].astype(int)]
    train_starts = start.loc[tokens[np.flatnonzero(split == 0)].astype(int)]
    assert valid_starts.min() >= train_starts.max()


def test_prefix_samples_are_counted_right(data_dir: Path, tmp_path: Path) -> None:
    config = Config("TASRec", "tiny", config_dict=small_settings(data_dir, tmp_path, drop_unseen_targets=False))
    dataset = TASRecDataset(config)
    parts = dataset.build()
    raw = raw_after_filters(data_dir, "tiny")
    assert sum(len(p) for p in parts) == len(raw) - raw["session"].nunique()


def test_unseen_targets_are_dropped_from_valid_and_test_only(built) -> None:
    _, dataset, (train, valid, test) = built
    train_items = set(dataset.train_items.tolist())
    for part in (valid, test):
        assert set(part.inter_feat[dataset.iid_field].tolist()) <= train_items
    # an unseen item inside a prefix stays
    prefixes = test.inter_feat[dataset.item_id_list_field]
    assert set(prefixes[prefixes > 0].tolist()) - train_items, "the drifting data has new items in test prefixes"


# RecBole's own augmentation, run here only as the reference, trips a numpy 2 deprecation inside torch
@pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning")
def test_vectorised_augmentation_equals_recboles(built) -> None:
    config, _, _ = built
    dataset = TASRecDataset(config)
    Dataset._change_feat_format(dataset)  # tensors, without augmentation
    theirs = copy.copy(dataset)
    SequentialDataset.data_augmentation(theirs)
    ours = copy.copy(dataset)
    TASRecDataset.data_augmentation(ours)
    assert set(ours.inter_feat.columns) == set(theirs.inter_feat.columns)
    # RecBole sorts by (session, float32 time) first; ours keeps the float64 order: compare per session
    key = [ours.uid_field, ours.item_list_length_field]
    order_ours = np.lexsort([ours.inter_feat[k].numpy() for k in reversed(key)])
    order_theirs = np.lexsort([theirs.inter_feat[k].numpy() for k in reversed(key)])
    for field in ours.inter_feat.columns:
        assert torch.equal(ours.inter_feat[field][order_ours], theirs.inter_feat[field][order_theirs]), field


def test_day_clicks_hold_every_click_in_session_order(data_dir: Path, built) -> None:
    _, dataset, _ = built
    clicks = dataset.day_clicks
    assert clicks.n_days == dataset.n_days
    assert clicks.offsets[-1] == len(raw_after_filters(data_dir, "tiny"))
    for t in range(clicks.n_days):
        sessions, _ = clicks.day(t)
        assert (dataset.session_day[sessions] == t).all()
    # consecutive clicks of a session are consecutive in the arrays
    change = np.flatnonzero(np.diff(clicks.session) != 0) + 1
    assert len(change) + 1 == len(np.unique(clicks.session))


def make_log(path: Path, name: str, rows: list[tuple[int, int, int]]) -> None:
    folder = path / name
    folder.mkdir(parents=True)
    lines = ["session_id:token\titem_id:token\ttimestamp:float"] + [f"{s}\t{i}\t{t}" for s, i, t in rows]
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")


def test_too_few_days_for_a_test_split_is_a_clear_error(tmp_path: Path) -> None:
    write(SyntheticConfig(n_items=40, sessions_per_day=30, n_days=1, seed=1), tmp_path, "oneday")
    config = Config("TASRec", "oneday", config_dict=small_settings(tmp_path, tmp_path / "runs"))
    with pytest.raises(DataSplitError, match="leaving none to train on"):
        TASRecDataset(config)


def test_day_span_groups_calendar_days(data_dir: Path, tmp_path: Path) -> None:
    config = Config("TASRec", "tiny", config_dict=small_settings(data_dir, tmp_path, day_span=3))
    dataset = TASRecDataset(config)
    assert dataset.n_days == 5  # 14 calendar days in blocks of 3


def test_an_empty_day_only_decays_the_graph(tmp_path: Path) -> None:
    # days 0, 1, 3, 4, 5, 6 have sessions; day 2 has none
    rows, sid = [], 0
    rng = np.random.default_rng(0)
    for day in (0, 1, 3, 4, 5, 6):
        for _ in range(15):
            sid += 1
            items = rng.choice(8, size=3, replace=False) + 1
            rows += [(sid, int(item), day * DAY + 3600 + 60 * sid + k) for k, item in enumerate(items)]
    make_log(tmp_path, "gap", rows)
    config = Config("TASRec", "gap", config_dict=small_settings(tmp_path, tmp_path / "runs", min_item_clicks=1))
    dataset = TASRecDataset(config)
    assert dataset.n_days == 7
    assert dataset.day_clicks.offsets[2] == dataset.day_clicks.offsets[3]  # day 2 is empty
    train, valid, test = dataset.build()
    assert len(train) and len(valid) and len(test)


def test_length_one_sessions_are_filtered(tmp_path: Path) -> None:
    rows = [(1, 1, 10), (2, 1, 20), (2, 2, 30)] + [(s, 1 + s % 2, s * DAY + k) for s in range(3, 40) for k in range(2)]
    make_log(tmp_path, "short", rows)
    config = Config("TASRec", "short", config_dict=small_settings(tmp_path, tmp_path / "runs", min_item_clicks=1))
    dataset = TASRecDataset(config)
    assert "1" not in set(dataset.field2id_token[dataset.uid_field])


def test_filters_that_leave_nothing_are_a_clear_error(tmp_path: Path) -> None:
    make_log(tmp_path, "sparse", [(s, s, s * DAY) for s in range(1, 30)])
    config = Config("TASRec", "sparse", config_dict=small_settings(tmp_path, tmp_path / "runs"))
    with pytest.raises(DataSplitError, match="survives the filters"):
        TASRecDataset(config)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"normalize_all": True}, "normalize_all"),
        ({"normalize_field": ["timestamp"]}, "normalize_field"),
        ({"discretization": {"timestamp": {"method": "ED", "bucket": 5}}}, "discretization"),
    ],
)
def test_rescaling_the_time_field_is_refused(data_dir: Path, tmp_path: Path, overrides: dict, named: str) -> None:
    """RecBole would rescale the timestamps before the days are derived from them: a clear error instead."""
    config = Config("TASRec", "tiny", config_dict=small_settings(data_dir, tmp_path, **overrides))
    with pytest.raises(ValueError, match=f"{named} would rescale the time field 'timestamp'"):
        TASRecDataset(config)


def test_the_day_grid_starts_at_the_first_raw_click(tmp_path: Path) -> None:
    """Day 0 starts at midnight before the first click of the file, whatever the filters drop: a session of
    rare items on calendar day 0 is filtered out by min_item_clicks=2, and no day boundary moves."""
    rng = np.random.default_rng(1)
    rows = [(1, 100, 23 * 3600), (1, 101, 23 * 3600 + 60)]  # rare items, 23:00 on calendar day 0
    for day in range(1, 8):
        for k in range(12):
            sid = 100 * day + k
            items = rng.choice(6, size=3, replace=False) + 1
            rows += [(sid, int(item), day * DAY + 600 * k + j) for j, item in enumerate(items)]
    make_log(tmp_path, "rare", rows)
    days = {}
    for min_clicks in (1, 2):
        settings = small_settings(tmp_path, tmp_path / f"runs{min_clicks}", min_item_clicks=min_clicks)
        dataset = TASRecDataset(Config("TASRec", "rare", config_dict=settings))
        tokens = dataset.field2id_token[dataset.uid_field]
        kept = np.flatnonzero(dataset.session_day >= 0)
        days[min_clicks] = dict(zip(tokens[kept].astype(int).tolist(), dataset.session_day[kept].tolist(), strict=True))
        assert dataset.n_days == 8 and dataset.day_origin == 0.0
    assert 1 in days[1] and 1 not in days[2]
    assert days[2] == {sid: day for sid, day in days[1].items() if sid != 1}
    assert days[2] == {sid: sid // 100 for sid in days[2]}


@pytest.mark.parametrize(
    ("n_days", "ratio", "expected"),
    [
        (15, 1 / 6, 3),  # 2.5 rounds up (round() would give 2)
        (21, 1 / 6, 4),  # 3.5 rounds up
        (15, 0.16666666666666666, 3),  # the yaml default
        (14, 1 / 6, 2),
        (45, 0.7, 32),  # 45 * 0.7 is 31.499999999999996 in floating point: still a half
        (38, 1 / 6, 6),
        (2, 0.1, 1),  # at least one test day
    ],
)
def test_test_day_count_rounds_half_up(n_days: int, ratio: float, expected: int) -> None:
    assert n_test_days(n_days, ratio) == expected


@pytest.mark.parametrize("ratio", [0, 1, -0.2, 1.5, "1/6", True])
def test_bad_test_day_ratio_is_named(ratio) -> None:
    with pytest.raises(ValueError, match="test_day_ratio must be a number in"):
        n_test_days(15, ratio)


def test_fifteen_days_give_three_test_days(tmp_path: Path) -> None:
    write(SyntheticConfig(n_items=40, sessions_per_day=20, n_days=15, seed=2), tmp_path, "fifteen")
    config = Config("TASRec", "fifteen", config_dict=small_settings(tmp_path, tmp_path / "runs"))
    dataset = TASRecDataset(config)
    assert dataset.n_days == 15 and dataset.n_train_days == 12
