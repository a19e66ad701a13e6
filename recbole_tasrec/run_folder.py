"""One folder per run for everything RecBole writes: logs, tensorboard runs and checkpoints.

RecBole writes logs to a hard-coded ``./log/`` (recbole/utils/logger.py:75), tensorboard runs to
``./log_tensorboard`` (recbole/utils/utils.py:220) and checkpoints to ``checkpoint_dir`` (default ``saved/``), all
relative to the working directory. With this package's ``run_dir`` setting (``properties/overall.yaml``: ``runs``)
they all land under ``<run_dir>``: ``log/``, ``log_tensorboard/`` and ``saved/``. This holds for
:func:`recbole_tasrec.run_recbole_tasrec` and for a plain RecBole script that loads this package's yaml files.

Building a ``Config`` only computes the default ``checkpoint_dir``; the folder is created, and the log file opened,
when a run starts (``init_logger``). No state is kept between runs: the tensorboard folder follows the run's log file.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The run folder when a config has no ``run_dir`` (a plain RecBole config without this package's yaml files).
DEFAULT_RUN_DIR = "runs"
_INSTALLED = False


def run_dir_of(config: Any) -> Path:
    """The config's run folder, absolute (RecBole's writers reopen files, so relative paths would follow ``cwd``)."""
    return Path(config["run_dir"] or DEFAULT_RUN_DIR).resolve()


def _init_logger_in_run_dir(original: Callable[[Any], None]) -> Callable[[Any], None]:
    """Wrap ``init_logger`` (recbole/utils/logger.py:75 hard-codes ``./log/``): a run starts here.

    The log file goes to ``<run_dir>/log/<model>/``. Upstream configures the root logger with
    ``logging.basicConfig``, which does nothing once handlers exist, so a second run in one process (tests, Ray
    workers, sweeps) logged into the first run's file: the old handlers are closed first.
    """

    def init_logger(config: Any) -> None:
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        target = run_dir_of(config)
        target.mkdir(parents=True, exist_ok=True)
        with contextlib.chdir(target):
            original(config)

    init_logger.__wrapped__ = original  # type: ignore[attr-defined]
    return init_logger


def _log_file(logger: logging.Logger) -> Path | None:
    """The run's log file, ``<run_dir>/log/<model>/<name>.log``; other file handlers (pytest's ``/dev/null``, a
    user's own) are not a run's."""
    for candidate in (logger, logging.getLogger()):
        for handler in candidate.handlers:
            path = Path(getattr(handler, "baseFilename", ""))
            if isinstance(handler, logging.FileHandler) and len(path.parents) > 2 and path.parents[1].name == "log":
                return path
    return None


def _tensorboard_in_run_dir(logger: logging.Logger) -> Any:
    """Replacement for ``get_tensorboard`` (recbole/utils/utils.py:220 hard-codes ``log_tensorboard``).

    Same naming rule (the run's log file name), under ``<run_dir>/log_tensorboard`` of the run whose log file the
    logger writes (``<run_dir>/log/<model>/<name>.log``), as an absolute path. Without a log file (no run started):
    ``runs/log_tensorboard`` of the working directory.
    """
    from recbole.utils import get_local_time
    from torch.utils.tensorboard import SummaryWriter

    log_file = _log_file(logger)
    if log_file is None:
        return SummaryWriter(str(Path(DEFAULT_RUN_DIR).resolve() / "log_tensorboard" / f"model-{get_local_time()}"))
    return SummaryWriter(str(log_file.parents[2] / "log_tensorboard" / log_file.stem))


def _checkpoint_dir_default(original: Callable[[Any], None]) -> Callable[[Any], None]:
    """Wrap ``Config._set_default_parameters`` (recbole/config/configurator.py): when ``run_dir`` is set and
    ``checkpoint_dir`` is not given, checkpoints go to ``<run_dir>/saved``. Creates nothing."""

    def set_default_parameters(self: Any) -> None:
        original(self)
        run = self.final_config_dict.get("run_dir")
        if run and "checkpoint_dir" not in self.external_config_dict:
            self.final_config_dict["checkpoint_dir"] = str(Path(run) / "saved")

    set_default_parameters.__wrapped__ = original  # type: ignore[attr-defined]
    return set_default_parameters


def install() -> None:
    """Route RecBole's logs, tensorboard runs and checkpoints into the run folder. Safe to call again."""
    global _INSTALLED
    if _INSTALLED:
        return
    import recbole.config.configurator as configurator
    import recbole.trainer.trainer as trainer_module
    import recbole.utils as utils
    import recbole.utils.logger as logger_module

    configurator.Config._set_default_parameters = _checkpoint_dir_default(configurator.Config._set_default_parameters)
    logger_module.init_logger = utils.init_logger = _init_logger_in_run_dir(logger_module.init_logger)
    utils.get_tensorboard = trainer_module.get_tensorboard = _tensorboard_in_run_dir
    _INSTALLED = True
