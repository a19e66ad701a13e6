"""Starting the processes of a run over several processes (GPUs, or CPUs), the RecBole way.

RecBole 1.2.1 runs ``nproc`` processes on one machine (``--nproc=N``) or several machines (``--world_size=W
--ip=HOST --port=P --offset=K``, ``K`` the global rank of this machine's first process). This module decides
whether a run needs several processes (:func:`launch_settings`: the settings above, or a ``torchrun``
environment) and starts them (:func:`launch`, with ``torch.multiprocessing.spawn``). Each process then joins
the group (:mod:`.device`), trains on its share (:mod:`.sharding`) with a rank's trainer (:mod:`.trainer`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.distributed as dist

#: The settings of a run over several processes, as RecBole's ``run`` names them, and their defaults.
LAUNCH_DEFAULTS: dict[str, Any] = {"nproc": 1, "world_size": -1, "ip": "localhost", "port": 5678, "offset": 0}
#: What ``torchrun`` (and other launchers following it) put in each process's environment.
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def torchrun_settings(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """This process's settings under ``torchrun``, or ``None`` when not launched by it."""
    if not all(key in environ for key in TORCHRUN_ENV):
        return None
    rank, local_rank = int(environ["RANK"]), int(environ["LOCAL_RANK"])
    return {
        "local_rank": local_rank,
        "offset": rank - local_rank,
        "world_size": int(environ["WORLD_SIZE"]),
        "nproc": int(environ.get("LOCAL_WORLD_SIZE", 1)),
        "ip": environ["MASTER_ADDR"],
        "port": int(environ["MASTER_PORT"]),
    }


def launch_settings(config: Any, environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The settings of the processes a run needs, or ``None`` for a plain one-process run (or a process
    that is already one of several)."""
    if not config["single_spec"]:
        return None
    environ = os.environ if environ is None else environ
    from_torchrun = torchrun_settings(environ)
    if from_torchrun is not None:
        return from_torchrun
    settings = {key: config[key] if config[key] is not None else default for key, default in LAUNCH_DEFAULTS.items()}
    nproc, world_size, offset = (settings[key] for key in ("nproc", "world_size", "offset"))
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (nproc, world_size, offset)):
        raise ValueError(f"nproc, world_size and offset must be integers, got {nproc!r}, {world_size!r}, {offset!r}")
    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    if nproc == 1 and world_size <= 0:
        return None
    settings["world_size"] = nproc if world_size == -1 else world_size
    if offset < 0 or offset + nproc > settings["world_size"]:
        raise ValueError(
            f"--offset={offset} with --nproc={nproc} does not fit --world_size={settings['world_size']}: "
            "on each machine set --offset to the number of processes on the machines before it"
        )
    return settings


def launch(settings: dict[str, Any], run: Callable[..., dict[str, Any]], **run_kwargs: Any) -> dict[str, Any] | None:
    """Run ``run(**run_kwargs)`` (:func:`recbole_tasrec.run_recbole_tasrec`) on every process of this machine.

    Under ``torchrun`` this process is one of them: it runs and returns its result on global rank 0,
    ``None`` elsewhere. Otherwise ``nproc`` processes are spawned and local rank 0's result is returned; an
    ``epoch_callback`` (e.g. a Ray Tune trial's report) is called here, in this thread, with local rank 0's
    validation results, which the spawned processes send back as they come.
    """
    if "local_rank" in settings:
        result = _run_rank(settings, run, run_kwargs)
        return result if settings["local_rank"] + settings["offset"] == 0 else None
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    results, reports = context.SimpleQueue(), context.SimpleQueue()
    callback = run_kwargs.pop("epoch_callback", None)
    args = (settings, run, run_kwargs, results, reports if callback is not None else None)
    processes = mp.spawn(_spawned, args=args, nprocs=settings["nproc"], join=False)
    try:
        while not processes.join(timeout=0.2):
            while callback is not None and not reports.empty():
                callback(*reports.get())
        while callback is not None and not reports.empty():
            callback(*reports.get())
    finally:
        for process in processes.processes:  # e.g. a trial stopped by its scheduler: stop its processes too
            if process.is_alive():
                process.terminate()
    return None if results.empty() else results.get()


def _spawned(local_rank: int, settings: dict, run: Callable[..., Any], run_kwargs: dict, results: Any, reports: Any):
    if settings["nproc"] > 1 and not torch.cuda.is_available():  # share the cores instead of oversubscribing
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // settings["nproc"]))
    if reports is not None and local_rank == 0:
        run_kwargs = {**run_kwargs, "epoch_callback": lambda epoch, valid: reports.put((epoch, valid))}
    result = _run_rank({**settings, "local_rank": local_rank}, run, run_kwargs)
    if local_rank == 0:
        results.put(result)


def _run_rank(settings: dict[str, Any], run: Callable[..., Any], run_kwargs: dict) -> dict[str, Any]:
    run_kwargs = {**run_kwargs, "config_dict": {**(run_kwargs.get("config_dict") or {}), **settings}}
    try:
        return run(**run_kwargs)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
