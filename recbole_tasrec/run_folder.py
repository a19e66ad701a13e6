"""One folder per run for everything RecBole writes: logs, tensorboard runs and checkpoints.

RecBole writes logs to a hard-coded ``./log/`` (recbole/utils/logger.py:75), tensorboard runs to
``./log_tensorboard`` (recbole/utils/utils.py:220) and checkpoints to ``checkpoint_dir`` (default ``saved/``), all
relative to the working directory. With this package's ``run_dir`` setting (``properties/overall.yaml``: ``runs``)
they all land under ``<run_dir>``: ``log/``, ``log_tensorboard/`` and ``saved/``, for every run built on this
package's ``Config``, :func:`init_logger` and trainer (:func:`recbole_tasrec.run_recbole_tasrec` and all that
calls it). RecBole's own functions are left as they are: a plain RecBole script writes where RecBole documents.

Building a ``Config`` only computes the default ``checkpoint_dir``; the folder is created, and the log file opened,
when a run starts (:func:`init_logger`). No state is kept between runs: the tensorboard folder follows the run's
log file.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: The run folder when a config has no ``run_dir`` (a plain RecBole config without this package's yaml files).
DEFAULT_RUN_DIR = "runs"


def run_dir_of(config: Any) -> Path:
    """The config's run folder, absolute (RecBole's writers reopen files, so relative paths would follow ``cwd``)."""
    return Path(config["run_dir"] or DEFAULT_RUN_DIR).resolve()


def init_logger(config: Any) -> None:
    """RecBole's ``init_logger`` in the run folder (upstream hard-codes ``./log/``, recbole/utils/logger.py:75).

    The log file goes to ``<run_dir>/log/<model>/``. Upstream configures the root logger with
    ``logging.basicConfig``, which does nothing once handlers exist, so a second run in one process (tests, Ray
    workers, sweeps) logged into the first run's file: the old handlers are closed first. The folders are made
    here, ``exist_ok``: upstream's check-then-create (utils/utils.py:44) races when several processes start.
    """
    from recbole.utils import init_logger as recbole_init_logger

    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    target = run_dir_of(config)
    (target / "log" / str(config["model"])).mkdir(parents=True, exist_ok=True)
    with contextlib.chdir(target):
        recbole_init_logger(config)


@contextlib.contextmanager
def inside(config: Any) -> Iterator[None]:
    """Work in the run folder: RecBole's ``get_tensorboard`` (recbole/utils/utils.py:220) writes to a relative
    ``log_tensorboard/<log file name>``, which then lands in ``<run_dir>/log_tensorboard``."""
    target = run_dir_of(config)
    target.mkdir(parents=True, exist_ok=True)
    with contextlib.chdir(target):
        yield


def absolute_writer(writer: Any) -> Any:
    """RecBole's tensorboard ``writer``, made inside the run folder (:func:`inside`), reopened on its folder's
    absolute path: its events are written later, from a thread, relative to whatever the working folder is then.
    Closing it leaves a header-only events file next to the new one, which TensorBoard reads as empty."""
    from torch.utils.tensorboard import SummaryWriter

    writer.close()
    return SummaryWriter(str(Path(writer.log_dir).resolve()))


def checkpoint_dir(settings: dict[str, Any], given: dict[str, Any]) -> str:
    """The run's ``checkpoint_dir``, absolute: ``<run_dir>/saved`` unless ``given`` (the user's settings) names one.
    Absolute, because the trainer builds its writer inside the run folder (:func:`inside`)."""
    run = settings.get("run_dir")
    if run and "checkpoint_dir" not in given:
        return str(Path(run).resolve() / "saved")
    return str(Path(settings["checkpoint_dir"]).resolve())
