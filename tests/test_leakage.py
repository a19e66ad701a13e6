"""No sample ever sees its own day or a later one: rewrite every day from ``t`` on at random, and the loss and
scores of day ``t``'s samples stay bit-identical, in training, validation and test, streaming and frozen."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pytest
import torch

from recbole_tasrec.data import DayClicks, TASRecDataset
from recbole_tasrec.model import TASRec
from tests.conftest import TinySplit

SPLITS = {"train": 0, "valid": 1, "test": 2}


@pytest.fixture(scope="module")
def setup(tiny_split: Callable[..., TinySplit]):
    split = tiny_split(dropout_prob=0.3, step=2, n_layers=2)
    config, dataset, parts = split.config, split.data.dataset, (split.data.train, split.data.valid, split.data.test)
    torch.manual_seed(0)
    return config, dataset, parts, TASRec(config, parts[0])


def rewritten_from(dataset: TASRecDataset, t: int, seed: int) -> TASRecDataset:
    """A shallow copy of ``dataset`` whose clicks of days ``>= t`` are random items (same sessions)."""
    clicks = dataset.day_clicks
    items = clicks.item.copy()
    start = clicks.offsets[min(max(t, 0), clicks.n_days)]
    items[start:] = np.random.default_rng(seed).integers(1, dataset.item_num, len(items) - start)
    fake = copy.copy(dataset)
    fake.day_clicks = DayClicks(clicks.session, items, clicks.offsets)
    return fake


def outputs(model: TASRec, source, batch, training: bool) -> list[torch.Tensor]:
    """The training loss and the scores (training mode: the same dropout masks for every call)."""
    model.graph_source = source
    model.train(training)
    with torch.no_grad():
        torch.manual_seed(1)
        loss = model.calculate_loss(batch)
        torch.manual_seed(1)
        return [loss, model.full_sort_predict(batch)]


@pytest.mark.parametrize(
    ("split", "mode"),
    [("train", "streaming"), ("valid", "streaming"), ("test", "streaming"), ("valid", "frozen"), ("test", "frozen")],
)
def test_rewriting_a_day_and_later_days_leaves_its_samples_unchanged(setup, split: str, mode: str) -> None:
    config, dataset, parts, model = setup
    part = parts[SPLITS[split]]
    days = part.inter_feat[dataset.day_field].long().numpy()
    model.temporal_eval = mode
    # frozen evaluation stops the graph at the first test day: later days may not matter to any sample
    cutoff = (lambda t: min(t, dataset.n_train_days)) if mode == "frozen" and split != "train" else (lambda t: t)
    sensitive = 0
    try:
        for t in np.unique(days):
            batch = part.inter_feat[torch.as_tensor(np.flatnonzero(days == t)[:32])]
            real = outputs(model, dataset.graph_source(config), batch, split == "train")
            for seed in (0, 1):
                fake = rewritten_from(dataset, cutoff(int(t)), seed).graph_source(config)
                for got, expected in zip(outputs(model, fake, batch, split == "train"), real, strict=True):
                    assert torch.equal(got, expected), f"{split} samples of day {t} ({mode}) saw later data"
            # the check is not vacuous: rewriting the day before does move the scores
            earlier = rewritten_from(dataset, cutoff(int(t)) - 1, 0).graph_source(config)
            sensitive += not torch.equal(outputs(model, earlier, batch, split == "train")[1], real[1])
    finally:
        model.temporal_eval = "streaming"
        model.graph_source = dataset.graph_source(config)
    assert sensitive >= len(np.unique(days)) - 1
