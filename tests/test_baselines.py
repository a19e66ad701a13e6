"""RecBole's own ID-only sequential models run end to end on the day-based split, and see TASRec's samples.

Each model trains one epoch on the tiny data set through :func:`recbole_tasrec.run_recbole_tasrec`, the path the
CLI, Ray Tune and the benchmarks take; sizes are kept small (``small_settings`` plus the transformer sizes below).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from recbole_tasrec import prepare_data, run_recbole_tasrec
from recbole_tasrec.config import Config
from tests.conftest import small_settings

BASELINES = [
    "SRGNN",
    "GRU4Rec",
    "NARM",
    "STAMP",
    "SASRec",
    "GCSAN",
    "Caser",
    "NextItNet",
    "BERT4Rec",
    "LightSANs",
    "CORE",
]

#: Small values for the keys of the models' own yaml files (recbole/properties/model/<Model>.yaml) that
#: small_settings does not set: transformer heads and feed-forward width (SASRec, GCSAN, BERT4Rec, LightSANs,
#: CORE; 16 / 2 heads), LightSANs' latent interests (default 5), NextItNet's residual blocks (default 5).
MODEL_SETTINGS: dict[str, object] = {"n_heads": 2, "inner_size": 32, "k_interests": 2, "block_num": 1}

pytestmark = pytest.mark.slow  # every test trains a model or builds two data sets


def settings(data_dir: Path, run_dir: Path) -> dict[str, object]:
    return small_settings(data_dir, run_dir, **MODEL_SETTINGS)


@pytest.mark.parametrize("model", BASELINES)
def test_baseline_trains_and_evaluates_on_the_day_split(model: str, data_dir: Path, tmp_path: Path) -> None:
    result = run_recbole_tasrec(model, "tiny", config_dict=settings(data_dir, tmp_path), saved=False)
    assert result["model"] == model
    recall = result["test_result"]["recall@20"]
    assert math.isfinite(recall) and 0.0 <= recall <= 1.0
    assert math.isfinite(result["best_valid_result"]["recall@20"])
    assert all(math.isfinite(loss) for loss in result["train_loss"])
    assert len(result["train_loss"]) == 1  # one epoch, as asked


def _samples(part, config: Config) -> dict[str, torch.Tensor]:
    feat = part.inter_feat
    fields = [
        config["USER_ID_FIELD"],  # the session
        config["ITEM_ID_FIELD"],  # the target
        config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"],  # the prefix
        config["ITEM_LIST_LENGTH_FIELD"],
        config["DAY_FIELD"],
    ]
    return {field: feat[field] for field in fields}


@pytest.mark.parametrize("baseline", ["SRGNN", "BERT4Rec"])
def test_baselines_get_tasrecs_samples(baseline: str, data_dir: Path, tmp_path: Path) -> None:
    """Same sessions, targets, prefixes and days in train, valid and test, and the same item ids: the comparison
    is fair. BERT4Rec is the odd one out among RecBole's models (it masks items, with its own transform)."""
    ours = prepare_data(Config("TASRec", "tiny", config_dict=settings(data_dir, tmp_path / "tasrec")))
    config = Config(baseline, "tiny", config_dict=settings(data_dir, tmp_path / baseline))
    theirs = prepare_data(config)
    assert type(theirs.dataset) is type(ours.dataset)
    iid = config["ITEM_ID_FIELD"]
    assert list(theirs.dataset.field2id_token[iid]) == list(ours.dataset.field2id_token[iid])
    for name in ("train", "valid", "test"):
        a, b = _samples(getattr(ours, name), config), _samples(getattr(theirs, name), config)
        assert len(a[iid]) > 0
        for field in a:
            assert torch.equal(a[field], b[field]), f"{name} {field} differs for {baseline}"


def test_build_model_takes_a_ready_class_and_is_seeded(data_dir: Path, tmp_path: Path) -> None:
    """The one builder (runs, checkpoints, sweeps, benchmarks, serving): a class given directly, the config's seed."""
    from recbole.model.sequential_recommender import GRU4Rec

    from recbole_tasrec.quick_start import build_model

    config = Config("GRU4Rec", "tiny", config_dict=settings(data_dir, tmp_path))
    prepared = prepare_data(config)
    by_name, by_class = build_model(config, prepared.train), build_model(config, prepared.train, GRU4Rec)
    assert type(by_class) is type(by_name) is GRU4Rec
    for a, b in zip(by_name.parameters(), by_class.parameters(), strict=True):
        assert torch.equal(a, b)  # seeded the same way
    other = build_model(
        Config("GRU4Rec", "tiny", config_dict={**settings(data_dir, tmp_path), "seed": 8}), prepared.train
    )
    assert not torch.equal(next(other.parameters()), next(by_name.parameters()))
