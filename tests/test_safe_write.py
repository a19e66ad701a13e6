"""The one crash-safe writer: flushed before the rename, one line on a full disk, stale temporaries cleaned."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from recbole_tasrec import safe_write
from recbole_tasrec.checkpoint import save_atomically
from recbole_tasrec.safe_write import WriteError, atomic_path, remove_stale_temporaries, write_text

TORCH_FULL_DISK = (
    "[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0\n"
    "frame #0: c10::ThrowEnforceNotMet(char const*, int, char const*, std::string const&, void const*) + 0x5c"
)


def test_the_file_is_flushed_before_the_rename_and_the_folder_after(tmp_path: Path, monkeypatch) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    write_text(tmp_path / "a.txt", "new\n")
    assert events == ["fsync", "replace", "fsync"]  # the data, the rename, the folder entry
    assert (tmp_path / "a.txt").read_text() == "new\n" and os.listdir(tmp_path) == ["a.txt"]


@pytest.mark.parametrize(
    "failure",
    [OSError(errno.ENOSPC, "No space left on device"), RuntimeError(TORCH_FULL_DISK)],
    ids=["ENOSPC", "torch-zip-writer"],
)
def test_a_full_disk_is_one_line_naming_the_file_and_keeps_the_old_one(tmp_path: Path, monkeypatch, failure) -> None:
    target = tmp_path / "model.pth"
    save_atomically({"weights": torch.ones(2)}, target)
    before = target.read_bytes()

    def full_disk(obj, f, **kwargs) -> None:
        Path(f).write_bytes(b"PK half a zip")
        raise failure

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(WriteError) as raised:
        save_atomically({"weights": torch.zeros(2)}, target)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"could not write {target}: ")
    assert ("No space left" in message) if isinstance(failure, OSError) else ("is the disk full?" in message)
    assert target.read_bytes() == before and os.listdir(tmp_path) == ["model.pth"]


def test_other_errors_of_the_writer_pass_through_unchanged(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="^a bug$"), atomic_path(tmp_path / "a.txt"):
        raise RuntimeError("a bug")
    assert os.listdir(tmp_path) == []


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_killed_writers_are_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "big.inter"
    old = time.time() - safe_write.STALE_AFTER_DEAD - 60
    killed = tmp_path / f".big.inter.tmp-{dead_pid()}-{'a' * 12}.inter"  # a converter killed an hour ago
    running = tmp_path / f".big.inter.tmp-{os.getpid()}-{'b' * 12}.inter"  # a write in progress
    just_killed = tmp_path / f".big.inter.tmp-{dead_pid()}-{'c' * 12}.inter"  # maybe on another host: wait
    ancient = tmp_path / f".big.inter.tmp-{os.getpid()}-{'d' * 12}.inter"  # a day old, whoever wrote it
    staged = tmp_path / f".big.inter.tmp-{dead_pid()}-{'e' * 12}"  # a staged folder
    other = tmp_path / f".other.tmp-{dead_pid()}-{'f' * 12}"  # another file's: not this write's to clean
    mine = tmp_path / ".big.inter.tmp-notes"  # not the package's pattern
    for path in (killed, running, just_killed, ancient, other, mine):
        path.write_bytes(b"x" * 1024)
    staged.mkdir()
    (staged / "weights.pt").write_bytes(b"x")
    for path in (killed, running, staged, other, mine):
        os.utime(path, (old, old))
    day_old = time.time() - safe_write.STALE_AFTER - 60
    os.utime(ancient, (day_old, day_old))

    write_text(target, "clicks\n")
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {target.name, running.name, just_killed.name, other.name, mine.name}
    assert remove_stale_temporaries(target) == []  # nothing more to remove
