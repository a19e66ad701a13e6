"""The files that install the project agree with each other."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def uv_command() -> list[str]:
    # `uv run` names its own executable in $UV; otherwise uv is a module of the interpreter that installed it
    return [os.environ["UV"]] if os.environ.get("UV") else [sys.executable, "-m", "uv"]


def without_comments(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_requirements_txt_matches_the_lock() -> None:
    """pip users install requirements.txt with --no-deps: it must pin exactly what uv.lock pins."""
    exported = subprocess.run(
        [*uv_command(), "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if exported.returncode != 0:
        pytest.fail(f"uv export failed: {exported.stderr}")
    committed = (ROOT / "requirements.txt").read_text()
    assert without_comments(exported.stdout) == without_comments(committed), (
        "requirements.txt is stale: run `uv export --frozen --no-dev --no-emit-project --no-hashes -o requirements.txt`"
    )


def test_recbole_pin_and_ray_override() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert '"recbole==1.2.1"' in text and "override-dependencies" in text
    requirements = (ROOT / "requirements.txt").read_text()
    assert "recbole==1.2.1" in requirements
    ray = next(line for line in requirements.splitlines() if line.startswith("ray=="))
    major, minor = (int(part) for part in ray.split("==")[1].split(".")[:2])
    assert (major, minor) > (2, 6), "the lock must hold a current Ray, not recbole's ray<=2.6.3"
