"""Training batches that each belong to one day, so a forward pass uses one temporal graph.

Within a day the samples are shuffled; the days come in random order each epoch
(``train_day_order: shuffle``) or in calendar order (``chronological``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from recbole.data.dataloader import TrainDataLoader

#: ``train_day_order``'s values.
DAY_ORDERS = ("shuffle", "chronological")


class DayBatchSampler:
    """Yields lists of sample indices, each list from a single day.

    Args:
        days: the day of every sample (1-D tensor).
        batch_size: the largest batch; a day's last batch may be smaller.
        shuffle: shuffle samples within each day.
        day_order: ``shuffle`` or ``chronological``.
        generator: the torch generator that makes epochs reproducible.
    """

    def __init__(
        self, days: torch.Tensor, batch_size: int, shuffle: bool, day_order: str, generator: torch.Generator
    ) -> None:
        if day_order not in DAY_ORDERS:
            raise ValueError(f"train_day_order must be one of {DAY_ORDERS}, got {day_order!r}")
        days = days.long()
        self.order = torch.argsort(days, stable=True)  # sample indices grouped by day
        self.day_values, counts = torch.unique_consecutive(days[self.order], return_counts=True)
        self.day_ranges = torch.cumsum(counts, 0) - counts, counts
        self.batch_size, self.shuffle, self.day_order, self.generator = (
            batch_size,
            shuffle,
            day_order,
            generator,
        )

    def __len__(self) -> int:
        return int(torch.div(self.day_ranges[1] + self.batch_size - 1, self.batch_size, rounding_mode="floor").sum())

    def __iter__(self) -> Iterator[list[int]]:
        starts, counts = self.day_ranges
        n_days = len(counts)
        day_seq = torch.randperm(n_days, generator=self.generator) if self.day_order == "shuffle" else range(n_days)
        for d in day_seq:
            members = self.order[starts[d] : starts[d] + counts[d]]
            if self.shuffle:
                members = members[torch.randperm(len(members), generator=self.generator)]
            yield from (batch.tolist() for batch in torch.split(members, self.batch_size))


class DayGroupedTrainDataLoader(TrainDataLoader):
    """RecBole's ``TrainDataLoader`` whose batches never mix days (the fast path for TASRec)."""

    def __init__(self, config: Any, dataset: Any, sampler: Any, shuffle: bool = True) -> None:
        super().__init__(config, dataset, sampler, shuffle=shuffle)
        self._day_sampler = DayBatchSampler(
            dataset.inter_feat[dataset.day_field],
            self.step,
            shuffle,
            config["train_day_order"] or "shuffle",
            self.generator,
        )

    @property
    def _index_sampler(self) -> DayBatchSampler:
        # torch's DataLoader draws its batches of indices from ``_index_sampler``; this is its one seam
        return self._day_sampler
