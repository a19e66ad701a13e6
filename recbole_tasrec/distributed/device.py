"""Joining the process group with the device's backend: NCCL on GPUs, Gloo on CPUs.

RecBole 1.2.1 hard-codes NCCL (config/configurator.py:498) and CUDA, so it cannot train over CPU processes;
this package's ``Config._init_device`` calls :func:`join_process_group` instead (``docs/recbole-fixes.md``).
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def backend_for(device: torch.device) -> str:
    """NCCL for GPUs, Gloo for CPUs (NCCL has no CPU tensors)."""
    return "nccl" if device.type == "cuda" else "gloo"


def join_process_group(config: Any) -> bool:
    """For a rank of a distributed run (``local_rank`` set), pick the device and join the process group; returns
    False for a one-process config (then RecBole's own ``_init_device`` applies)."""
    cfg = config.final_config_dict
    if "local_rank" not in cfg:
        return False
    gpu_id = ",".join(map(str, cfg["gpu_id"])) if isinstance(cfg["gpu_id"], tuple) else str(cfg["gpu_id"])
    cfg["gpu_id"] = gpu_id
    under_torchrun = "TORCHELASTIC_RUN_ID" in os.environ  # torchrun decides which GPUs its processes see
    if not under_torchrun:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_id
    local_rank, nproc = int(cfg["local_rank"]), int(cfg.get("nproc") or 1)
    device = torch.device("cuda", local_rank) if gpu_id and torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        if torch.cuda.device_count() < nproc:
            raise ValueError(
                f"{nproc} processes need {nproc} GPUs but gpu_id={gpu_id!r} shows {torch.cuda.device_count()}: "
                "list them with --gpu_id=0,1,... or start fewer processes"
            )
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend_for(device),
            # under torchrun its agent already serves the rendezvous store
            init_method="env://" if under_torchrun else f"tcp://{cfg.get('ip') or 'localhost'}:{cfg.get('port')}",
            rank=local_rank + int(cfg.get("offset") or 0),
            world_size=int(cfg["world_size"]),
        )
    cfg.update(device=device, single_spec=False)
    if local_rank != 0:  # as upstream: only each machine's first process logs
        cfg.update(state="error", show_progress=False, verbose=False)
    return True
