"""Same seed, same data, same thread count -> the same metrics and weights on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recbole_tasrec.checkpoint import load_trusted
from recbole_tasrec.quick_start import run_recbole_tasrec

from .conftest import TrainedRun, small_settings
from .test_resume import assert_same_weights, flat


def one_epoch(data_dir: Path, run_dir: Path, seed: int) -> tuple[dict, dict]:
    """Test metrics and best weights of one epoch of TASRec on ``tiny`` (one torch thread: conftest)."""
    assert torch.get_num_threads() == 1
    result = run_recbole_tasrec("TASRec", "tiny", config_dict=small_settings(data_dir, run_dir, seed=seed))
    return result["test_result"], load_trusted(result["checkpoint"])["state_dict"]


def seven(trained_tasrec: TrainedRun) -> tuple[dict, dict]:
    """The session's trained run: one epoch with ``small_settings``, whose seed is 7."""
    assert trained_tasrec.settings["seed"] == 7
    return trained_tasrec.result["test_result"], load_trusted(trained_tasrec.checkpoint)["state_dict"]


def test_two_runs_with_one_seed_agree_exactly(data_dir: Path, tmp_path: Path, trained_tasrec: TrainedRun) -> None:
    metrics, weights = seven(trained_tasrec)
    metrics_again, weights_again = one_epoch(data_dir, tmp_path / "second", seed=7)
    assert metrics_again == metrics
    assert_same_weights(weights_again, weights)


def test_another_seed_gives_other_weights(data_dir: Path, tmp_path: Path, trained_tasrec: TrainedRun) -> None:
    """The comparison above can fail: the seed reaches the weights."""
    _, weights = seven(trained_tasrec)
    _, other = one_epoch(data_dir, tmp_path / "eight", seed=8)
    with pytest.raises(AssertionError):
        assert_same_weights(other, weights)
    assert any(isinstance(t, torch.Tensor) and t.is_floating_point() for t in flat(weights).values())
