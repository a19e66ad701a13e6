"""RecBole's own ID-only sequential models run end to end on the day-based split, and see TASRec's samples.

Each model trains one epoch on the tiny data set through :func:`recbole_tasrec.run_recbole_tasrec`, the path the
CLI, Ray Tune and the benchmarks take; sizes are kept small (``small_settings`` plus the transformer sizes below).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from recbole_tasrec import run_recbole_tasrec
from recbole_tasrec.config import Config
from tests.conftest import TinySplit, most_popular_recall, small_settings

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


#: Test Recall@20 on the tiny set after 3 epochs at learning rate 0.01, seeds 1 / 2 / 3 (most-popular: 0.203):
#: SRGNN .403 .429 .354, GRU4Rec .351 .375 .342, NARM .342 .436 .384, SASRec .491 .559 .474,
#: GCSAN .502 .578 .476; LightSANs and CORE above 0.38 already after one epoch; the test's seed 7 gave SRGNN
#: only .259. These must clear most-popular by 0.025 (about half the smallest lead seen, SRGNN's .056 at
#: seed 7). STAMP (.238 .278 .224), Caser (.170 .201 .198), NextItNet (.203 .229 .201) and BERT4Rec
#: (.236 .255 .212) do not beat it reliably this soon: for them the training loss must fall every epoch
#: instead (seed 7: NextItNet's fell least, 156.3 -> 151.9 -> 149.3).
BEAT_MOST_POPULAR = {"SRGNN", "GRU4Rec", "NARM", "SASRec", "GCSAN", "LightSANs", "CORE"}


@pytest.fixture(scope="module")
def most_popular(tiny_split: Callable[..., TinySplit]) -> float:
    return most_popular_recall(tiny_split().data)


@pytest.mark.parametrize("model", BASELINES)
def test_baseline_learns_on_the_day_split(
    model: str, data_dir: Path, tmp_path: Path, most_popular: float, tiny_split: Callable[..., TinySplit]
) -> None:
    run_settings = {**settings(data_dir, tmp_path), "epochs": 3, "learning_rate": 0.01}
    prepared = tiny_split(model, **MODEL_SETTINGS).data
    result = run_recbole_tasrec(model, "tiny", config_dict=run_settings, saved=False, prepared=prepared)
    assert result["model"] == model
    losses = result["train_loss"]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    recall = result["test_result"]["recall@20"]
    assert math.isfinite(result["best_valid_result"]["recall@20"])
    if model in BEAT_MOST_POPULAR:
        assert recall > most_popular + 0.025, (recall, most_popular)
    else:
        assert losses[2] < losses[1] < losses[0] and losses[2] < 0.98 * losses[0], losses
        assert recall > 0.5 * most_popular  # measured: at least 0.83 times most-popular (Caser, seed 1)


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
def test_baselines_get_tasrecs_samples(baseline: str, tiny_split: Callable[..., TinySplit]) -> None:
    """Same sessions, targets, prefixes and days in train, valid and test, and the same item ids: the comparison
    is fair. BERT4Rec is the odd one out among RecBole's models (it masks items, with its own transform)."""
    ours = tiny_split("TASRec", **MODEL_SETTINGS).data
    split = tiny_split(baseline, **MODEL_SETTINGS)
    config, theirs = split.config, split.data
    assert type(theirs.dataset) is type(ours.dataset)
    iid = config["ITEM_ID_FIELD"]
    assert list(theirs.dataset.field2id_token[iid]) == list(ours.dataset.field2id_token[iid])
    for name in ("train", "valid", "test"):
        a, b = _samples(getattr(ours, name), config), _samples(getattr(theirs, name), config)
        assert len(a[iid]) > 0
        for field in a:
            assert torch.equal(a[field], b[field]), f"{name} {field} differs for {baseline}"


def test_build_model_takes_a_ready_class_and_is_seeded(tiny_split: Callable[..., TinySplit]) -> None:
    """The one builder (runs, checkpoints, sweeps, benchmarks, serving): a class given directly, the config's seed."""
    from recbole.model.sequential_recommender import GRU4Rec

    from recbole_tasrec.quick_start import build_model

    split = tiny_split("GRU4Rec", **MODEL_SETTINGS)
    config, prepared = split.config, split.data
    by_name, by_class = build_model(config, prepared.train), build_model(config, prepared.train, GRU4Rec)
    assert type(by_class) is type(by_name) is GRU4Rec
    for a, b in zip(by_name.parameters(), by_class.parameters(), strict=True):
        assert torch.equal(a, b)  # seeded the same way
    other = build_model(Config("GRU4Rec", "tiny", config_dict={**split.settings, "seed": 8}), prepared.train)
    assert not torch.equal(next(other.parameters()), next(by_name.parameters()))
