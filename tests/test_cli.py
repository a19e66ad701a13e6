"""The command line (``run_recbole_tasrec.py``, :func:`recbole_tasrec.cli.main`) and the config layering.

One subprocess (the missing-data message, as a user sees it); everything else runs ``main`` in process.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import recbole_tasrec.quick_start
from recbole_tasrec import cli
from recbole_tasrec.config import Config, parse_overrides
from tests.conftest import small_settings

ROOT = Path(__file__).resolve().parents[1]


def cli_settings(data_dir: Path, run_dir: Path, **overrides: object) -> list[str]:
    """``small_settings`` as ``--key=value`` arguments."""
    return [f"--{key}={value}" for key, value in small_settings(data_dir, run_dir, **overrides).items()]


# --- missing data ---------------------------------------------------------------------------------------
@pytest.mark.slow  # a subprocess
def test_missing_dataset_says_how_to_get_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = subprocess.run(
        [sys.executable, "run_recbole_tasrec.py", "--dataset", "retailrocket", f"--data_path={missing}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert str(missing / "retailrocket" / "retailrocket.inter") in result.stderr
    assert "1. download events.csv" in result.stderr
    assert "2. uv run python -m recbole_tasrec.data.convert retailrocket --input events.csv" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_missing_dataset_hint_writes_where_the_run_reads(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["--dataset", "retailrocket", f"--data_path={tmp_path}"]) == 2
    assert f"--output-dir {tmp_path}" in capsys.readouterr().err


# --- a run ------------------------------------------------------------------------------------------
@pytest.mark.slow  # trains
def test_a_baseline_runs_from_the_command_line(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "results" / "out.json"
    settings = cli_settings(data_dir, tmp_path / "run")
    assert cli.main(["--model", "SRGNN", "--dataset", "tiny", *settings, "--result-json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["model"] == "SRGNN" and result["dataset"] == "tiny"
    for part in ("test_result", "best_valid_result"):
        recall = result[part]["recall@20"]
        assert isinstance(recall, float) and math.isfinite(recall) and 0.0 <= recall <= 1.0
    assert f"test  : {json.dumps(result['test_result'])}" in capsys.readouterr().out
    assert (tmp_path / "run" / "log").is_dir()  # the run's output went under its run_dir


# --- bad command lines: exit 2 with a message, no traceback, nothing trained ------------------------
@pytest.fixture
def no_run(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Replaces the training: records the calls ``main`` makes (it must make none on a bad command line)."""
    calls: list[tuple] = []

    def run(*args: object) -> dict:
        calls.append(args)
        return {"test_result": {}}

    monkeypatch.setattr(recbole_tasrec.quick_start, "run_recbole_tasrec", run)
    return calls


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (["epochs=1"], "cannot read 'epochs=1' as a RecBole setting: write it as --key=value"),
        (["--epochs"], "cannot read '--epochs' as a RecBole setting"),
        (["--epochs", "1"], "cannot read '--epochs'"),
        (["--epochs=1", "--epochs=2"], "--epochs is given twice with different values"),
    ],
)
def test_malformed_overrides_exit_2(
    bad: list[str], message: str, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, no_run: list
) -> None:
    assert cli.main(["--dataset", "tiny", f"--data_path={data_dir}", *bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert no_run == []


def test_a_non_sequential_model_exits_2(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["--model", "BPR", "--dataset", "tiny", *cli_settings(data_dir, tmp_path)]) == 2
    assert "BPR is not a sequential model" in capsys.readouterr().err


def test_an_unknown_model_exits_2(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, no_run: list) -> None:
    assert cli.main(["--model", "SRGNNN", "--dataset", "tiny", *cli_settings(data_dir, tmp_path)]) == 2
    assert "SRGNNN" in capsys.readouterr().err
    assert no_run == []


# --- parse_overrides ----------------------------------------------------------------------------------
def test_parse_overrides_keeps_strings_for_recboles_type_conversion() -> None:
    assert parse_overrides([]) == {}
    assert parse_overrides(["--epochs=3", "--learning_rate=1e-3", "--metrics=['Recall']"]) == {
        "epochs": "3",
        "learning_rate": "1e-3",
        "metrics": "['Recall']",
    }


def test_parse_overrides_splits_at_the_first_equals_sign() -> None:
    assert parse_overrides(["--data_path=/a=b/c", "--state="]) == {"data_path": "/a=b/c", "state": ""}


def test_parse_overrides_accepts_a_repeated_identical_setting() -> None:
    assert parse_overrides(["--epochs=3", "--epochs=3"]) == {"epochs": "3"}


@pytest.mark.parametrize("bad", ["epochs=3", "--epochs", "-e=3", "--=3", "epochs"])
def test_parse_overrides_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="write it as --key=value"):
        parse_overrides([bad])


def test_parse_overrides_rejects_conflicting_values() -> None:
    with pytest.raises(ValueError, match="--epochs is given twice"):
        parse_overrides(["--epochs=3", "--learning_rate=0.1", "--epochs=4"])


# --- config files and precedence ------------------------------------------------------------------------
@pytest.fixture
def user_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text("embedding_size: 8\nepochs: 4\n")
    return path


def test_config_files_are_honoured_and_the_command_line_beats_them(
    user_yaml: Path, data_dir: Path, tmp_path: Path
) -> None:
    settings = {"data_path": str(data_dir), "run_dir": str(tmp_path)}
    from_file = Config("TASRec", "tiny", [str(user_yaml)], settings)
    assert from_file["embedding_size"] == 8 and from_file["epochs"] == 4  # over TASRec.yaml's 100, overall's 30
    cmd = Config("TASRec", "tiny", [str(user_yaml)], settings, cmd_args=["--embedding_size=12"])
    assert cmd["embedding_size"] == 12 and cmd["epochs"] == 4
    both = Config("TASRec", "tiny", [str(user_yaml)], {**settings, "embedding_size": 10}, ["--embedding_size=12"])
    assert both["embedding_size"] == 12  # cmd beats config_dict
    assert Config("TASRec", "tiny", [str(user_yaml)], {**settings, "embedding_size": 10})["embedding_size"] == 10


def test_cli_passes_config_files_and_its_overrides_win(
    user_yaml: Path, data_dir: Path, tmp_path: Path, no_run: list, capsys: pytest.CaptureFixture
) -> None:
    settings = cli_settings(data_dir, tmp_path, embedding_size=12)
    assert cli.main(["--dataset", "tiny", "--config_files", str(user_yaml), *settings]) == 0
    (model, dataset, config_files, config_dict), *_ = no_run
    config = Config(model, dataset, config_files, config_dict)
    assert (model, dataset, config_files) == ("TASRec", "tiny", [str(user_yaml)])
    assert config["embedding_size"] == 12 and config["epochs"] == 1  # the command line over the file's 8 and 4


def test_precedence_of_every_layer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """cmd > config_dict > the user's files > properties/dataset > properties/model > properties/overall."""
    props = tmp_path / "properties"
    layers = ["overall", "model", "dataset", "files", "dict", "cmd"]
    # key k_<i> is set by the layers 0..i: each layer must beat every layer before it
    keys = {name: {f"k_{j}": f"'{name}'" for j in range(i, len(layers))} for i, name in enumerate(layers)}
    real_overall = (ROOT / "properties" / "overall.yaml").read_text()  # its other keys make the Config valid
    for name, where, text in [
        ("overall", "overall.yaml", real_overall),
        ("model", "model/SRGNN.yaml", ""),
        ("dataset", "dataset/tiny.yaml", ""),
    ]:
        (props / where).parent.mkdir(parents=True, exist_ok=True)
        (props / where).write_text(text + "".join(f"{k}: {v}\n" for k, v in keys[name].items()))
    (tmp_path / "user.yaml").write_text("".join(f"{k}: {v}\n" for k, v in keys["files"].items()))
    monkeypatch.setattr("recbole_tasrec.config.properties_dir", lambda: props)
    config = Config(
        "SRGNN",
        "tiny",
        [str(tmp_path / "user.yaml")],
        {k: "dict" for k in keys["dict"]},
        [f"--{k}=cmd" for k in keys["cmd"]],
    )
    assert [config[f"k_{i}"] for i in range(len(layers))] == layers


def test_config_never_reads_sys_argv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "argv", ["x", "--epochs=99", "--embedding_size=7"])
    config = Config("TASRec", "tiny", config_dict={"run_dir": str(tmp_path)})
    assert config["epochs"] == 30 and config["embedding_size"] == 100  # overall.yaml's and TASRec.yaml's
    assert Config("TASRec", "tiny", cmd_args=["--epochs=99"])["epochs"] == 99  # only when handed over


# --- the package's yaml files -------------------------------------------------------------------------
@pytest.mark.parametrize(("dataset", "day_span"), [("sample", 1), ("retailrocket", 3), ("diginetica", 4), ("aotm", 10)])
def test_dataset_yaml_sets_the_papers_day_span(dataset: str, day_span: int) -> None:
    assert Config("TASRec", dataset)["day_span"] == day_span


def test_model_yaml_layers_over_overall_yaml() -> None:
    tasrec, srgnn = Config("TASRec", "sample"), Config("SRGNN", "sample")
    assert tasrec["lr_scheduler"] == srgnn["lr_scheduler"] == "plateau"  # overall.yaml: one schedule for all
    assert srgnn["embedding_size"] == 64 and srgnn["step"] == 1  # RecBole's SRGNN.yaml still applies
    assert tasrec["epochs"] == 5  # sample.yaml, over overall.yaml's 30
    assert Config("TASRec", "retailrocket")["epochs"] == 30


def test_default_data_path_is_the_checkouts_atomic_data() -> None:
    assert Path(Config("TASRec", "sample")["data_path"]) == ROOT / "atomic_data" / "sample"


def test_model_and_dataset_can_come_from_the_config_files(
    data_dir: Path, tmp_path: Path, no_run: list, capsys: pytest.CaptureFixture
) -> None:
    """A sweep's best.yaml names its model and data set: --config_files alone reproduces it."""
    best = tmp_path / "best.yaml"
    best.write_text("model: SRGNN\ndataset: tiny\nembedding_size: 8\n")
    assert cli.main(["--config_files", str(best), *cli_settings(data_dir, tmp_path)]) == 0
    (model, dataset, _, _), *_ = no_run
    assert (model, dataset) == ("SRGNN", "tiny")
