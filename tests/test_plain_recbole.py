"""A user's own plain RecBole script (``tests/plain_recbole_script.py``) trains TASRec and it learns.

The script runs in a subprocess: RecBole's ``Config`` reads ``--key=value`` from ``sys.argv`` (pytest's own flags
would be there in process), and a fresh process also shows that ``import recbole_tasrec`` alone is enough to make
RecBole 1.2.1 work on this stack. It is run once (about 20 s on 2 cores) and the tests read its output. A plain
script keeps RecBole's documented behaviour apart from the module-level fixes of ``recbole_tasrec.compat``: the
last test compares every RecBole attribute before and after importing the package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from recbole_tasrec import prepare_data
from recbole_tasrec.config import Config
from tests.conftest import most_popular_recall, small_settings

SCRIPT = Path(__file__).resolve().parent / "plain_recbole_script.py"

pytestmark = pytest.mark.slow  # the script runs in a subprocess and trains


@dataclass
class ScriptRun:
    result: dict[str, Any]
    stdout: str
    cwd: Path
    run_dir: Path


@pytest.fixture(scope="module")
def script_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ScriptRun:
    cwd, run_dir = tmp_path_factory.mktemp("cwd"), tmp_path_factory.mktemp("plain_run")
    stdout = run_python([str(SCRIPT), f"--data_path={data_dir}", f"--run_dir={run_dir}"], cwd)
    *_, last = stdout.strip().splitlines()
    return ScriptRun(json.loads(last), stdout, cwd, run_dir)


def run_python(args: list[str], cwd: Path) -> str:
    """Run Python in a fresh process; returns its standard output."""
    # one torch thread: the model is tiny, and two threads on a shared 2-core machine wait on each other
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return proc.stdout


def test_the_training_loss_falls(script_run: ScriptRun) -> None:
    losses = script_run.result["train_loss"]
    # measured (seed 7, lr 0.005): 152.3, 125.5, 110.5 (RecBole's loss is the sum over the epoch's batches)
    assert len(losses) == 3
    assert all(later < earlier for earlier, later in zip(losses, losses[1:], strict=False))
    assert losses[-1] < 0.9 * losses[0]
    for epoch, loss in enumerate(losses):
        assert f"epoch {epoch}: train loss {loss:.4f}" in script_run.stdout


def test_it_beats_most_popular(script_run: ScriptRun, data_dir: Path, tmp_path: Path) -> None:
    """Test Recall@20 well above recommending the 20 most frequent training targets to everyone.

    Measured on the tiny set: most-popular 0.203, random 20 / 128 = 0.156; the script's TASRec 0.481 with seed 7,
    and 0.453 / 0.495 / 0.486 with seeds 1 / 2 / 3 (at the paper's learning rate, 1e-3, only 0.21-0.29).
    """
    prepared = prepare_data(Config("TASRec", "tiny", config_dict=small_settings(data_dir, tmp_path)))
    most_popular = most_popular_recall(prepared)
    n_items = script_run.result["n_items"]
    assert n_items == prepared.dataset.item_num  # the script saw the same data set
    random = 20 / (n_items - 1)  # item 0 is padding

    recall = script_run.result["test_result"]["recall@20"]
    assert most_popular > random  # the baseline is a real one on this data
    assert recall > most_popular + 0.15, (recall, most_popular)
    assert script_run.result["best_valid_result"]["recall@20"] > most_popular


def test_recboles_own_loader_mixes_days(script_run: ScriptRun) -> None:
    """The script used RecBole's loader, not the package's day-grouped one: the mixed-day path was trained."""
    assert script_run.result["mixed_day_batches"] > script_run.result["train_batches"] // 2


def test_the_best_checkpoint_was_saved_and_reloaded(script_run: ScriptRun) -> None:
    # trainer.evaluate(load_best_model=True) torch.loads it (trainer.py:583, fixed for torch >= 2.6)
    checkpoint = script_run.cwd / script_run.result["checkpoint"]
    assert checkpoint.is_file()


def test_a_plain_script_writes_where_recbole_documents(script_run: ScriptRun) -> None:
    """RecBole's own functions are not rerouted: ``./log``, ``./log_tensorboard`` and ``checkpoint_dir``
    (``saved/``), relative to the working folder; this package's ``run_dir`` is not used by a plain script."""
    assert sorted(p.name for p in script_run.cwd.iterdir()) == ["log", "log_tensorboard", "saved"]
    assert any((script_run.cwd / "log" / "TASRec").glob("*.log"))
    assert (script_run.cwd / script_run.result["checkpoint"]).parent == script_run.cwd / "saved"
    assert list(script_run.run_dir.iterdir()) == []


#: Snapshot every attribute of every RecBole module (and of its classes), import the package and build a run's
#: pieces with it, and print what changed.
REPLACED_SCRIPT = """
import json, sys
import recbole.config, recbole.data, recbole.trainer, recbole.utils, recbole.quick_start, recbole.model
import recbole.model.sequential_recommender, recbole.evaluator, recbole.data.dataset
from recbole.utils.argument_list import dataset_arguments

def snapshot():
    seen = {}
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] != "recbole" or module is None:
            continue
        for attr, value in list(vars(module).items()):
            seen[(name, attr)] = id(value)
            if isinstance(value, type) and value.__module__ == name:
                for key, member in list(vars(value).items()):
                    seen[(name, f"{attr}.{key}")] = id(member)
    return seen

before, arguments = snapshot(), list(dataset_arguments)
import recbole_tasrec
from recbole_tasrec import compat, quick_start, run_folder, trainer
from recbole_tasrec.data import dataset, dataloader
from recbole_tasrec.distributed import sharding
from recbole_tasrec.distributed import trainer as rank_trainer
from recbole_tasrec.config import Config
Config("TASRec", "tiny", config_dict={"data_path": sys.argv[1], "run_dir": sys.argv[2]})
after = snapshot()
changed = sorted(f"{m}:{a}" for (m, a), i in before.items() if after.get((m, a), i) != i)
print(json.dumps({"changed": changed, "declared": [f"{m}:{a}" for m, a in compat.REPLACED],
                  "dataset_arguments_kept": arguments == list(dataset_arguments)}))
"""


def test_importing_the_package_replaces_only_the_documented_recbole_attributes(data_dir: Path, tmp_path: Path) -> None:
    stdout = run_python(["-c", REPLACED_SCRIPT, str(data_dir), str(tmp_path)], tmp_path)
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["changed"] == sorted(report["declared"])
    assert len(report["changed"]) <= 6  # the aim: a few module-level fixes, everything else an override
    assert report["dataset_arguments_kept"]
