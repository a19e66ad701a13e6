"""``python -m recbole_tasrec.data.stats``: day statistics and the share of transitions the graph holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recbole_tasrec.data.stats import main
from recbole_tasrec.data.synthetic import SyntheticConfig, write


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
