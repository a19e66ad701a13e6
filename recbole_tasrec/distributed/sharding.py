"""Which samples each rank of a run over several processes evaluates, and who it is.

Every rank scores a contiguous run of the one-process evaluation batches (the same batches, so the same
scores); the per-sample rows are gathered by :class:`~recbole_tasrec.distributed.trainer.GatheringCollector`.
Training batches are split by :class:`~recbole_tasrec.data.dataloader.DayBatchSampler`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.data.utils import get_dataloader


def world_of(config: Any) -> tuple[int, int]:
    """``(rank, world_size)`` of this process: ``(0, 1)`` in a one-process run."""
    if config["single_spec"]:
        return 0, 1
    return int(config["local_rank"]) + int(config["offset"] or 0), int(config["world_size"])


class EvalShardSampler:
    """This rank's run of the one-process evaluation batches: the same batches (so the same scores), cut into
    ``world_size`` contiguous runs. Ranks may hold unequal numbers of batches: evaluation has no collective
    step until the results are gathered (:mod:`recbole_tasrec.distributed.trainer`)."""

    def __init__(self, n_samples: int, batch_size: int, rank: int, world_size: int) -> None:
        n_batches = -(-n_samples // batch_size)
        first, last = n_batches * rank // world_size, n_batches * (rank + 1) // world_size
        self.ranges = [range(k * batch_size, min((k + 1) * batch_size, n_samples)) for k in range(first, last)]

    def __len__(self) -> int:
        return len(self.ranges)

    def __iter__(self) -> Iterator[list[int]]:
        return (list(r) for r in self.ranges)


class ShardedFullSortEvalDataLoader(FullSortEvalDataLoader):
    """RecBole's full-ranking loader of a sequential model, scoring only this rank's batches."""

    def __init__(self, config: Any, dataset: Any, sampler: Any, shuffle: bool = False) -> None:
        super().__init__(config, dataset, sampler, shuffle=shuffle)
        self._init_batch_size_and_step()  # undo RecBole's division of the step by world_size
        self._shard = EvalShardSampler(self.sample_size, self.step, *world_of(config))

    @property
    def _index_sampler(self) -> EvalShardSampler:
        return self._shard

    def __bool__(self) -> bool:
        # RecBole's evaluate returns at once for an empty loader; a rank without batches must still gather
        return self.sample_size > 0


def eval_loader_class(config: Any, phase: str) -> type:
    """RecBole's evaluation loader for ``phase``, or its sharded twin when several processes evaluate."""
    loader_class = get_dataloader(config, phase)
    if config["single_spec"]:
        return loader_class
    if loader_class is not FullSortEvalDataLoader or not config["MODEL_TYPE"].name == "SEQUENTIAL":
        raise ValueError(
            "evaluation over several processes needs full ranking of a sequential model "
            "(eval_args mode: full); run sampled evaluation (uni100, pop100) with one process"
        )
    return ShardedFullSortEvalDataLoader
