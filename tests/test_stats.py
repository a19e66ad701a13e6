"""``python -m recbole_tasrec.data.stats``: day statistics and the share of transitions the graph holds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recbole_tasrec.data.stats import DRIFT_STUDY, DRIFT_STUDY_FILE, drift_study_gain, main, verdict
from recbole_tasrec.data.synthetic import SyntheticConfig, write
from tests.conftest import ROOT
from tests.test_dataset import DAY, make_log


@pytest.fixture(scope="module")
def sample_stats(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path, str]:
    out = tmp_path_factory.mktemp("stats")
    png = out / "sample.png"
    return main(["--dataset", "sample", "--output", str(png), f"--run_dir={out}"]), png, str(out)


def test_demo_set_statistics_add_up(sample_stats, capsys) -> None:
    stats, png, _ = sample_stats
    assert len(stats) == 30 and (stats["split"] == "test").sum() == 5  # 30 days, round(30 / 6) test days
    assert stats["held"].iloc[0] == 0.0  # day 0 has no earlier day: its graph is empty
    assert stats["new_items"].iloc[0] > 10 * stats["new_items"].iloc[1:].mean() / 2  # every item is new on day 0
    assert stats["test_targets"][stats["split"] == "train"].sum() == 0
    # the test samples of the split (what every model is tested on): 4,132 on the demo set
    assert stats["test_targets"].sum() == 4132
    # a drifting log: the graph holds a fair share of each day's transitions, far from all of them
    assert 0.1 < stats["held"].iloc[1:].mean() < 0.7
    assert png.is_file() and png.stat().st_size > 10_000


def test_a_lower_threshold_holds_more(sample_stats) -> None:
    stats, _, run_dir = sample_stats
    # threshold 0.25 keeps the edges of the last 3 days (binary, decay 1/2), not only yesterday's
    wider = main(["--dataset", "sample", "--output", f"{run_dir}/wide.png", f"--run_dir={run_dir}",
                  "--neighbor_threshold=0.25"])  # fmt: skip
    assert (wider["held"].iloc[2:] > stats["held"].iloc[2:]).all()
    assert np.array_equal(wider["samples"], stats["samples"])


def test_a_log_that_repeats_itself_is_held_almost_entirely(tmp_path: Path) -> None:
    # no drift at all: every day's successors are the same, so nearly every transition occurred yesterday
    write(SyntheticConfig(n_items=40, sessions_per_day=150, n_days=8, p_follow=1.0, transition_period=1000,
                          mean_item_lifetime=1000.0, popularity_drift=0.0, seed=3),
          tmp_path, "still")  # fmt: skip
    stats = main(["--dataset", "still", f"--data_path={tmp_path}", f"--run_dir={tmp_path}",
                  "--output", str(tmp_path / "still.png")])  # fmt: skip
    assert stats["held"].iloc[2:].min() > 0.9


def test_the_drift_study_points_are_the_committed_studys() -> None:
    study = json.loads((ROOT / "benchmarks" / "results" / "drift_study.json").read_text())
    points = sorted(
        (log["held"], 100 * (np.mean(log["recall@20"]["TASRec"]) - np.mean(log["recall@20"]["TASRec-base"])))
        for log in study["logs"].values()
    )
    assert len(DRIFT_STUDY) == len(points)
    for (held, gain), (study_held, study_gain) in zip(DRIFT_STUDY, points, strict=True):
        assert held == pytest.approx(study_held, abs=5e-7) and gain == pytest.approx(study_gain, abs=0.005)
    assert (ROOT / DRIFT_STUDY_FILE).is_file()


@pytest.mark.parametrize(
    ("held", "gain", "how"),
    [
        (
            0.40,
            4.67 + (0.40 - 0.315401) / (0.444805 - 0.315401) * (14.56 - 4.67),
            "between 31.5 % -> +4.7 pp and 44.5 %",
        ),
        (0.2, 1.67, "below every log of the study; the nearest held 26.5 %"),
        (0.9, 12.93, "above every log of the study; the nearest held 53.8 %"),
    ],
)
def test_the_study_is_interpolated_never_extrapolated(held: float, gain: float, how: str) -> None:
    got, said = drift_study_gain(held)
    assert got == pytest.approx(gain) and how in said


#: Two-click sessions (items), per day, of a 9-day log whose last 2 days test. The graph (binary, decay 1/2,
#: threshold 1) holds yesterday's transitions only.
HAND_MADE = [
    [(1, 2), (3, 4), (5, 6)],
    [(1, 2)],
    [(7, 8)],
    [(1, 2)],
    [(2, 3)],
    [(4, 5)],
    [(8, 9), (1, 2)],  # the last two training sessions validate
    [(1, 2), (3, 4), (9, 1), (6, 7)],  # test: graph 1 -> 2; earlier days 1 -> 2, 3 -> 4; training days the same
    [
        (9, 1),
        (6, 7),
        (2, 3),
        (7, 8),
        (5, 1),
    ],  # test: graph 9 -> 1, 6 -> 7; earlier all but 5 -> 1; training 2 -> 3, 7 -> 8
]


def test_the_verdict_on_a_hand_made_log(tmp_path: Path) -> None:
    rows, sid = [], 0
    for day, sessions in enumerate(HAND_MADE):
        for k, items in enumerate(sessions):
            sid += 1
            rows += [(sid, item, day * DAY + 3600 * (k + 1) + j) for j, item in enumerate(items)]
    make_log(tmp_path, "hand", rows)
    stats = main(["--dataset", "hand", f"--data_path={tmp_path}", f"--run_dir={tmp_path}", "--min_item_clicks=1",
                  "--output", str(tmp_path / "hand.png")])  # fmt: skip
    test = stats[stats["split"] == "test"]
    assert test["day"].tolist() == [7, 8] and test["test_targets"].tolist() == [4, 5]
    assert test["test_held"].tolist() == [1 / 4, 2 / 5]
    assert test["test_earlier"].tolist() == [2 / 4, 4 / 5]
    assert test["test_train_days"].tolist() == [2 / 4, 2 / 5]
    text = verdict(stats)
    assert "the temporal graph holds 33.3 % of the 9 test targets' transitions" in text
    # 3 of 9 held: 4.67 + (0.3333 - 0.3154) / (0.4448 - 0.3154) * (14.56 - 4.67) = 6.04 pp
    assert "gave TASRec +6.0 pp of test Recall@20 over TASRec-base" in text
    assert "expect a modest gain from the graph" in text
    assert "The sessions of earlier days hold 66.7 % of those transitions" in text
    assert "the training days alone hold 44.4 %" in text


def test_no_test_target_is_said_plainly() -> None:
    stats = pd.DataFrame([{"test_targets": 0, "test_held": np.nan, "test_earlier": np.nan, "test_train_days": np.nan}])
    assert verdict(stats) == "Verdict: no test sample, nothing to judge."


def test_earlier_days_hold_what_the_graph_holds_and_more(sample_stats) -> None:
    """The graph is made of earlier days' transitions, and the training days are earlier days; on the first test
    day the earlier days are the training days."""
    stats, _, _ = sample_stats
    test = stats[stats["split"] == "test"]
    assert (test["test_held"] <= test["test_earlier"]).all() and (test["test_train_days"] <= test["test_earlier"]).all()
    assert test["test_earlier"].iloc[0] == test["test_train_days"].iloc[0]
    assert (test["test_earlier"].iloc[1:] > test["test_train_days"].iloc[1:]).all()  # the test days add to it
