"""The files that install the project agree with each other."""

from __future__ import annotations

import os
import shutil
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


@pytest.mark.slow  # a subprocess (uv export)
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


def _run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{command[:3]} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow  # builds a wheel and a virtual environment (hard links from uv's cache), then trains one epoch
def test_the_wheel_installs_and_runs_an_epoch_from_another_folder(tmp_path: Path) -> None:
    uv = uv_command()
    _run([*uv, "build", "--wheel", "--out-dir", str(tmp_path / "dist")], cwd=ROOT, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("recbole_tasrec-*.whl")
    venv = tmp_path / "venv"
    _run([*uv, "venv", "--quiet", "--python", sys.executable, str(venv)], timeout=120)
    python = venv / "bin" / "python"
    install = [*uv, "pip", "install", "--quiet", "--python", str(python), "--no-deps", "-r", "requirements.txt"]
    offline = subprocess.run([*install, "--offline", str(wheel)], cwd=ROOT, capture_output=True, check=False)
    if offline.returncode != 0:  # something is not in uv's cache: fetch it from the registry
        _run([*install, str(wheel)], cwd=ROOT, timeout=900)

    work = tmp_path / "elsewhere"  # no checkout here: the defaults must come from inside the wheel
    shutil.copytree(ROOT / "atomic_data" / "sample", work / "atomic_data" / "sample")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "UV")}
    env.update(OMP_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0")
    where = _run([str(python), "-c", WHERE], cwd=work, env=env, timeout=300).stdout.split()
    assert Path(where[0]).is_relative_to(venv) and Path(where[1]) == Path(where[0]) / "properties"
    assert Path(where[2]) == work / "atomic_data" / "sample"  # ./atomic_data of the working directory

    small = ["--epochs=1", "--embedding_size=16", "--n_layers=1", "--train_batch_size=512", "--show_progress=False"]
    run = _run([str(venv / "bin" / "recbole-tasrec"), *small, "--state=WARNING"], cwd=work, env=env, timeout=900)
    test_line = next(line for line in run.stdout.splitlines() if line.startswith("test  : "))
    assert "recall@20" in test_line and "ndcg@100" in test_line  # overall.yaml's metrics and topk were read
    assert list((work / "runs" / "log" / "TASRec").glob("*.log"))  # run_dir defaults to ./runs


#: What the installed package uses: its own file, its properties folder, and the default data path of ``sample``.
WHERE = (
    "import recbole_tasrec\n"
    "from recbole_tasrec.config import Config, properties_dir\n"
    "print(recbole_tasrec.__file__.rsplit('/', 1)[0], properties_dir(), Config('TASRec', 'sample')['data_path'])\n"
)
