"""Which code produced a result: in a git checkout, its commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def source_commit() -> str:
    """The commit of the checkout the package runs from, with ``-dirty`` when tracked files differ from it;
    ``unknown`` for an installed wheel (its folder is no checkout of this package, even inside one) or without git."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=PACKAGE_DIR, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != PACKAGE_DIR.parent:
            return "unknown"
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return git("rev-parse", "HEAD") + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
