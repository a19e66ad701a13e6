"""Day-grouped training batches: one day per batch, every sample once per epoch."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from recbole_tasrec.data.dataloader import DayBatchSampler
from recbole_tasrec.quick_start import make_dataloaders
from tests.conftest import TinySplit


def epoch(sampler: DayBatchSampler) -> list[list[int]]:
    return list(iter(sampler))


@pytest.mark.parametrize("order", ["shuffle", "chronological"])
def test_every_batch_holds_one_day_and_every_sample_comes_once(order: str) -> None:
    days = torch.tensor([3, 0, 1, 0, 2, 3, 3, 1, 0, 2, 2, 2, 2])
    sampler = DayBatchSampler(days, batch_size=2, shuffle=True, day_order=order, generator=torch.Generator())
    batches = epoch(sampler)
    assert len(batches) == len(sampler) == 8  # per day: ceil(3/2) + ceil(2/2) + ceil(5/2) + ceil(3/2)
    assert sorted(i for batch in batches for i in batch) == list(range(len(days)))
    assert all(len(set(days[batch].tolist())) == 1 for batch in batches)
    day_sequence = [int(days[batch[0]]) for batch in batches]
    runs = [d for k, d in enumerate(day_sequence) if k == 0 or d != day_sequence[k - 1]]
    assert len(runs) == 4  # a day's batches come together
    if order == "chronological":
        assert runs == [0, 1, 2, 3]


def test_day_order_is_shuffled_reproducibly() -> None:
    days = torch.arange(30).repeat_interleave(3)
    first = epoch(DayBatchSampler(days, 3, True, "shuffle", torch.Generator().manual_seed(1)))
    again = epoch(DayBatchSampler(days, 3, True, "shuffle", torch.Generator().manual_seed(1)))
    assert first == again
    assert [int(days[b[0]]) for b in first] != list(range(30))


def test_unknown_day_order_is_named() -> None:
    with pytest.raises(ValueError, match="train_day_order"):
        DayBatchSampler(torch.zeros(3), 2, True, "random", torch.Generator())


def test_tasrec_trains_on_day_grouped_batches(tiny_split: Callable[..., TinySplit]) -> None:
    split = tiny_split()
    train, _, _ = make_dataloaders(split.config, split.data)
    batches = list(train)
    day_field = train._dataset.day_field
    assert all(len(torch.unique(b[day_field])) == 1 for b in batches)
    assert sum(len(b) for b in batches) == len(train._dataset)
