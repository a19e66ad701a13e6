"""Ray itself: starting a private local Ray or joining a cluster, and checking its resources.

Every change this package makes to Ray's settings and to the environment Ray reads is in :func:`local_ray_environment`.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from pathlib import Path
from typing import Any

import ray
from ray._private import ray_constants

from recbole_tasrec.tune.spec import SweepError


def _check_reachable(address: str) -> None:
    """Fail in seconds, not after Ray's connection retries, when nothing listens at ``host:port``."""
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise SweepError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise SweepError(f"no Ray cluster at {address}: {err.strerror or err}") from None


#: The environment variables that configure Ray's token authentication; any of them set means the user chose.
AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
_PROCESS_TOKEN = secrets.token_hex(32)  # the token of every private local Ray this process starts


def ray_environment() -> None:
    """Every process-wide setting this package gives Ray, for a sweep on any Ray: no usage statistics.

    Set before ``ray.init``; the raylet and the workers inherit the environment.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def local_ray_environment() -> None:
    """The further settings of a private local Ray, in one place.

    - A token for Ray's token authentication through the environment (unless one is configured), so that Ray
      does not write one into the home folder; Ray's notice that a new local cluster uses one is silenced. One
      token per process: Ray's driver caches the token it first read, so a second local Ray started in the same
      process with another token fails to start (``InvalidAuthToken``).
    - Under ``uv run``, Ray ships the working directory to every worker and starts it with ``uv run``, which builds
      a new virtual environment per Ray session (minutes, gigabytes); a local Ray's workers simply use this
      interpreter. Ray reads ``RAY_ENABLE_UV_RUN_RUNTIME_ENV`` when it is imported, hence the constant.
    """
    ray_environment()
    if not any(os.environ.get(v) for v in AUTH_VARIABLES) and not (Path.home() / ".ray" / "auth_token").exists():
        os.environ["RAY_AUTH_TOKEN"] = _PROCESS_TOKEN
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = False


def init_ray(address: str | None = None, *, num_cpus: int | None = None, verbose: bool = False) -> None:
    """Start a private local Ray (``address=None``) or join a running cluster (``auto``, ``HOST:PORT``,
    ``ray://HOST:PORT``).

    A local Ray never joins a cluster found on the machine (``ray.init()`` would) and keeps the dashboard off; see
    :func:`local_ray_environment` for the rest.
    """
    kwargs: dict[str, Any] = {"log_to_driver": verbose, "logging_level": "INFO" if verbose else "WARNING"}
    if address is None:
        local_ray_environment()
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **kwargs)
        return
    ray_environment()
    if address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        message = " ".join(str(err).split())  # Ray's messages span lines; one line here, shortened
        raise SweepError(f"cannot join the Ray cluster at {address}: {message[:300]}") from None


def check_resources(cpus_per_trial: float, gpus_per_trial: float | None) -> float:
    """The GPUs per trial (default: 1 if the cluster has a GPU, else 0); a trial that asks for more than the
    cluster has would wait forever."""
    available = ray.cluster_resources()
    gpus = available.get("GPU", 0.0)
    if gpus_per_trial is None:
        gpus_per_trial = 1.0 if gpus >= 1 else 0.0
    if gpus_per_trial > gpus:
        raise SweepError(f"--gpus-per-trial {gpus_per_trial:g}, but the Ray cluster has {gpus:g} GPUs")
    if cpus_per_trial > available.get("CPU", 0.0):
        raise SweepError(
            f"--cpus-per-trial {cpus_per_trial:g}, but the Ray cluster has {available.get('CPU', 0.0):g} CPUs"
        )
    return gpus_per_trial
