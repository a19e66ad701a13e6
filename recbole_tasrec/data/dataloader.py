"""Training batches that each belong to one day, so a forward pass uses one temporal graph; and, over
several processes, each day batch split between the ranks (evaluation: :mod:`recbole_tasrec.distributed.sharding`).

Within a day the samples are shuffled; the days come in random order each epoch
(``train_day_order: shuffle``) or in calendar order (``chronological``).

Over ``W`` processes every rank draws the same global schedule (the generators share RecBole's ``seed``):
each global batch of ``train_batch_size`` samples (one day) is cut into ``W`` disjoint parts that differ
by at most one sample, and rank ``r`` trains on part ``r``. All ranks therefore take the same number of
steps and work on the same day in the same step. To keep every part non-empty, a day's last batch of
fewer than ``W`` samples joins the day's previous batch; a whole day with fewer than ``W`` samples is
padded by repeating its own samples (the only samples seen twice in an epoch).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from recbole.data.dataloader import TrainDataLoader

from recbole_tasrec.distributed.sharding import world_of

#: ``train_day_order``'s values.
DAY_ORDERS = ("shuffle", "chronological")


class DayBatchSampler:
    """Yields lists of sample indices, each list from a single day (this rank's part of a day batch).

    Args:
        days: the day of every sample (1-D tensor).
        batch_size: the largest global batch; a day's last batch may be smaller.
        shuffle: shuffle samples within each day.
        day_order: ``shuffle`` or ``chronological``.
        generator: the torch generator that makes epochs reproducible (seeded alike on every rank).
        rank, world_size: this process's share of each batch (module docstring).
    """

    def __init__(
        self,
        days: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        day_order: str,
        generator: torch.Generator,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if day_order not in DAY_ORDERS:
            raise ValueError(f"train_day_order must be one of {DAY_ORDERS}, got {day_order!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside [0, world_size={world_size})")
        days = days.long()
        self.order = torch.argsort(days, stable=True)  # sample indices grouped by day
        self.day_values, counts = torch.unique_consecutive(days[self.order], return_counts=True)
        self.day_ranges = torch.cumsum(counts, 0) - counts, counts
        self.batch_size, self.shuffle, self.day_order, self.generator = batch_size, shuffle, day_order, generator
        self.rank, self.world_size = rank, world_size

    def _batches_per_day(self) -> torch.Tensor:
        counts = self.day_ranges[1]
        full = torch.div(counts + self.batch_size - 1, self.batch_size, rounding_mode="floor")
        rest = counts % self.batch_size
        merged = (rest > 0) & (rest < self.world_size) & (counts > self.batch_size)
        return full - merged.long()

    def __len__(self) -> int:
        return int(self._batches_per_day().sum())

    def _day_batches(self, members: torch.Tensor, n_batches: int) -> tuple[torch.Tensor, ...]:
        """A day's global batches: ``batch_size`` each, the last one taking a remainder below ``world_size``."""
        if len(members) < self.world_size:  # pad a tiny day with its own samples, so no rank's part is empty
            members = members[torch.arange(self.world_size) % len(members)]
        cuts = [self.batch_size * k for k in range(1, n_batches)]
        return torch.tensor_split(members, cuts)

    def __iter__(self) -> Iterator[list[int]]:
        starts, counts = self.day_ranges
        n_batches = self._batches_per_day().tolist()
        n_days = len(counts)
        day_seq = torch.randperm(n_days, generator=self.generator) if self.day_order == "shuffle" else range(n_days)
        for d in day_seq:
            members = self.order[starts[d] : starts[d] + counts[d]]
            if self.shuffle:
                members = members[torch.randperm(len(members), generator=self.generator)]
            for batch in self._day_batches(members, n_batches[d]):
                yield torch.tensor_split(batch, self.world_size)[self.rank].tolist()


class DayGroupedTrainDataLoader(TrainDataLoader):
    """RecBole's ``TrainDataLoader`` whose batches never mix days (the fast path for TASRec)."""

    def __init__(self, config: Any, dataset: Any, sampler: Any, shuffle: bool = True) -> None:
        super().__init__(config, dataset, sampler, shuffle=shuffle)
        rank, world_size = world_of(config)
        if world_size > 1:
            self._init_batch_size_and_step()  # RecBole divided the step by world_size; the sampler splits batches
        self._day_sampler = DayBatchSampler(
            dataset.inter_feat[dataset.day_field],
            self.step,
            shuffle,
            config["train_day_order"],
            self.generator,
            rank,
            world_size,
        )

    @property
    def _index_sampler(self) -> DayBatchSampler:
        # torch's DataLoader draws its batches of indices from ``_index_sampler``; this is its one seam
        return self._day_sampler
