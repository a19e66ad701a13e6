"""Training over several processes (GPUs, or CPUs) with torch's DistributedDataParallel, the RecBole way.

* :mod:`.launcher`: whether a run needs several processes, and starting them;
* :mod:`.device`: each process joins the group with its device's backend (NCCL on GPUs, Gloo on CPUs);
* :mod:`.sharding`: what each rank evaluates (each training day batch is split by
  :class:`~recbole_tasrec.data.dataloader.DayBatchSampler`);
* :mod:`.trainer`: a rank's trainer: DDP on CPUs too, metrics gathered, checkpoints by rank 0.
"""

from recbole_tasrec.distributed.device import backend_for, join_process_group
from recbole_tasrec.distributed.launcher import (
    LAUNCH_DEFAULTS,
    TORCHRUN_ENV,
    launch,
    launch_settings,
    torchrun_settings,
)

__all__ = [
    "LAUNCH_DEFAULTS",
    "TORCHRUN_ENV",
    "backend_for",
    "join_process_group",
    "launch",
    "launch_settings",
    "torchrun_settings",
]
