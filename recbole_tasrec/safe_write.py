"""Crash-safe writing: every file the package writes goes through :func:`atomic_path`.

A file is written under a temporary name in its own folder, flushed to disk (``fsync``), renamed onto its final
name (``os.replace``, atomic on one file system) and the folder flushed too, so after a crash or a power cut a
reader finds the previous file or the new one, never a truncated one. A failed write (a full disk) leaves the
previous file untouched and raises :class:`WriteError`, one line naming the file.

Temporary names are ``.<name>.tmp-<pid>-<random>[<suffix>]``: a process killed mid-write (a converter, a
checkpoint) leaves one behind, and the next write of the same file removes it once it is stale (its process is
gone and it is over :data:`STALE_AFTER_DEAD` old, or it is over :data:`STALE_AFTER` old whatever its process).
This module imports neither torch nor pandas, so light entry points (the converters) stay light.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike[str]

#: Seconds after which a temporary file of a process that no longer runs here is removed.
STALE_AFTER_DEAD = 3600.0
#: Seconds after which any temporary file is removed (its pid may belong to another host of a shared folder).
STALE_AFTER = 24 * 3600.0
_TEMP = re.compile(r"\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]{12}(\..*)?")


class WriteError(OSError):
    """A file could not be written (full disk, no permission); the previous file, if any, is unchanged."""


def temporary_name(path: Path) -> Path:
    """A fresh temporary path next to ``path`` that :func:`remove_stale_temporaries` recognises; it keeps
    ``path``'s suffix, so writers that pick a format by the extension (``savefig``) still work."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}{path.suffix}")


def _process_runs(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # another user's process, or a platform without signal 0
        return True
    return True


def remove_stale_temporaries(path: PathLike, now: float | None = None) -> list[Path]:
    """Remove the stale temporary files and folders left next to ``path`` by interrupted writes of it; returns
    what was removed. A temporary of a running write is never stale: its process runs and it is recent."""
    path = Path(path)
    now = time.time() if now is None else now
    removed = []
    with contextlib.suppress(OSError):  # a folder that cannot be listed: nothing to clean, the write reports
        for candidate in path.parent.glob(f".{glob_escape(path.name)}.tmp-*"):
            match = _TEMP.fullmatch(candidate.name)
            if match is None or match["name"] != path.name:
                continue
            try:
                age = now - candidate.lstat().st_mtime
            except OSError:
                continue
            if age > STALE_AFTER or (age > STALE_AFTER_DEAD and not _process_runs(int(match["pid"]))):
                _remove(candidate)
                removed.append(candidate)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters made literal."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def fsync_path(path: PathLike) -> None:
    """Flush a written file, or a folder's entries (POSIX; Windows cannot open a folder), to disk."""
    path = Path(path)
    if path.is_dir():
        if os.name == "nt":
            return
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    else:
        flags = os.O_RDWR if os.name == "nt" else os.O_RDONLY
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """Flush every file of a folder, then the folder itself (a staged folder about to be renamed)."""
    for child in path.rglob("*"):
        if child.is_file():
            fsync_path(child)
    fsync_path(path)


def describe_failure(path: Path, error: BaseException) -> str:
    """One line: which file could not be written and why (torch's multi-line C++ messages are shortened)."""
    text = str(error).strip()
    if _is_torch_write_failure(error):
        reason = "torch.save could not write the data (is the disk full?)"
    else:
        reason = getattr(error, "strerror", None) or (text.splitlines()[0] if text else type(error).__name__)
    return f"could not write {path}: {reason}; the previous file, if any, is unchanged"


def _is_torch_write_failure(error: BaseException) -> bool:
    """torch.save reports a failed write (a full disk) as a RuntimeError from its C++ zip writer."""
    return isinstance(error, RuntimeError) and any(m in str(error) for m in ("inline_container", "PytorchStreamWriter"))


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """A temporary path in ``path``'s folder for the caller to write (a file, or a folder); when the block ends
    without an error it is flushed to disk and renamed onto ``path`` and the folder flushed, else removed with any
    folder created for it. A full disk or another :class:`OSError` becomes a :class:`WriteError` naming ``path``.
    Stale temporaries of earlier, killed writes of ``path`` are removed first."""
    path = Path(path)
    new_dirs = [d for d in (path.parent, *path.parent.parents) if not d.exists()]  # deepest first
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WriteError(describe_failure(path, error)) from error
    remove_stale_temporaries(path)
    tmp = temporary_name(path)  # the writer creates it: the usual permissions (mkstemp's are 0600)
    try:
        try:
            yield tmp
            if tmp.is_dir():
                fsync_tree(tmp)
            else:
                fsync_path(tmp)
            if tmp.is_dir() and path.is_dir():  # a folder cannot be renamed onto a folder: move the old one aside
                aside = temporary_name(path)
                os.replace(path, aside)
                os.replace(tmp, path)
                _remove(aside)
            else:
                os.replace(tmp, path)
            fsync_path(path.parent)
        except OSError as error:
            if isinstance(error, WriteError):
                raise
            raise WriteError(describe_failure(path, error)) from error
        except RuntimeError as error:
            if not _is_torch_write_failure(error):
                raise
            raise WriteError(describe_failure(path, error)) from error
    except BaseException:
        _remove(tmp)
        for directory in new_dirs:
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise


def write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` crash-safely (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` crash-safely (see :func:`atomic_path`)."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: PathLike, value: Any) -> None:
    """Write ``value`` as indented JSON with a final newline, crash-safely."""
    write_text(path, json.dumps(value, indent=2) + "\n")


def save_torch(obj: Any, path: PathLike) -> None:
    """``torch.save`` crash-safely (see :func:`atomic_path`); a full disk is a one-line :class:`WriteError`."""
    import torch  # here: importing this module must not load torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp, pickle_protocol=4)
