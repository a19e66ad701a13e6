"""What a trainer does differently on one of several processes (:mod:`recbole_tasrec.distributed`).

* The model: wrapped in DDP with ``device_ids`` only on a GPU (RecBole passes them for CPU modules too, which
  DDP refuses: trainer/trainer.py:62), and with no buffer broadcast per step (each rank computes its buffers).

* Metrics: RecBole 1.2.1 averages each rank's rounded metrics, weighted by a count that is not the number
  of samples (``trainer.py:615``: ``len(batched_data)`` is the tuple's 4), over a sampler that pads ranks
  with repeated samples. Here every rank scores its own batches of the one-process run
  (:class:`~recbole_tasrec.distributed.sharding.ShardedFullSortEvalDataLoader`), the per-sample rows the
  evaluator reads (top-k hits, ranks) are gathered in rank order, and the metrics are computed once from
  them: they equal a one-process evaluation exactly.
* Checkpoints: written by global rank 0 only (atomically, by the trainer's own writer), with the unwrapped
  module's ``state_dict`` (loadable by a one-process run and by serving); the others wait for the file.
* The epoch's training loss is the mean over ranks.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import torch
import torch.distributed as dist
from recbole.evaluator import Collector
from recbole.trainer.trainer import AbstractTrainer
from torch.nn.parallel import DistributedDataParallel

#: The data-struct entries with one row per evaluated sample (``Collector.eval_batch_collect``).
ROW_KEYS = ("rec.items", "rec.topk", "rec.meanrank", "rec.score", "data.label")
#: What a one-process run's config holds in place of a rank's settings.
ONE_PROCESS = {"single_spec": True, "local_rank": 0, "nproc": 1, "world_size": -1, "offset": 0}


#: Buffers are computed alike on every rank: no broadcast per step (newer torch renames the flag).
NO_BUFFER_SYNC_PER_STEP = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else {"broadcast_buffers": False}
)


class WrapsForAnyDevice(AbstractTrainer):
    """``AbstractTrainer.__init__`` for a rank on a GPU or a CPU. Placed after RecBole's ``Trainer`` in a rank
    trainer's bases (:func:`distributed_trainer`), so that ``Trainer.__init__``'s ``super().__init__`` lands here."""

    def __init__(self, config: Any, model: torch.nn.Module) -> None:
        self.config = config
        self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        on_gpu = config["device"].type == "cuda"
        self.distributed_model = DistributedDataParallel(
            self.model, device_ids=[config["local_rank"]] if on_gpu else None, **NO_BUFFER_SYNC_PER_STEP
        )


def broadcast_object(value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def one_process_config(config: Any) -> Any:
    """A copy of a rank's ``config`` as a one-process run has it, for checkpoints that load anywhere."""
    single = copy.copy(config)
    single.final_config_dict = {**config.final_config_dict, **ONE_PROCESS}
    return single


class GatheringCollector(Collector):
    """RecBole's ``Collector`` whose data struct holds the rows of every rank, in rank order."""

    def get_data_struct(self) -> Any:
        struct = super().get_data_struct()
        local = {key: struct.get(key) for key in ROW_KEYS if key in struct}
        gathered: list[dict[str, torch.Tensor] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, local)
        for key in ROW_KEYS:
            parts = [part[key] for part in gathered if part is not None and key in part]
            if parts:
                struct.set(key, torch.cat(parts))
        return struct


def distributed_trainer(trainer_class: type) -> type:
    """``trainer_class`` for one rank of a run over several processes (module docstring)."""

    class DistributedTrainer(trainer_class, WrapsForAnyDevice):
        def __init__(self, config: Any, model: Any) -> None:
            super().__init__(config, model)
            self.saved_model_file = broadcast_object(self.saved_model_file)  # names carry a time and a random id
            self.eval_collector = GatheringCollector(config)

        def _map_reduce(self, result: dict, num_sample: int) -> dict:
            return result  # the gathered rows already gave every rank the global metrics

        def _train_epoch(self, train_data: Any, epoch_idx: int, loss_func: Any = None, show_progress: bool = False):
            loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
            total = torch.tensor(loss if isinstance(loss, tuple) else [loss], dtype=torch.float64, device=self.device)
            dist.all_reduce(total)
            mean = (total / dist.get_world_size()).tolist()
            return tuple(mean) if isinstance(loss, tuple) else mean[0]

        def _save_checkpoint(self, epoch: int, verbose: bool = True, **kwargs: Any) -> None:
            target = kwargs.pop("saved_model_file", self.saved_model_file)
            if dist.get_rank() == 0:  # the trainer's own writer is atomic (temporary name, then rename)
                distributed_config, self.config = self.config, one_process_config(self.config)
                try:
                    super()._save_checkpoint(epoch, verbose=verbose, saved_model_file=target, **kwargs)
                finally:
                    self.config = distributed_config
            dist.barrier()  # nobody reads the checkpoint before it is complete

    DistributedTrainer.__name__ = DistributedTrainer.__qualname__ = f"Distributed{trainer_class.__name__}"
    return DistributedTrainer
