"""Hostile command lines, tried on purpose: settings of the wrong type or range, code in a setting (command line,
``config_dict``, yaml, search space: never run), unknown models and metrics, config files that are missing or not
YAML, data that cannot be split. Each exits with status 2 and one ``error:`` line that
names the setting or the file, with no traceback and nothing trained; the converters' command line likewise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recbole_tasrec.quick_start
from recbole_tasrec import cli
from recbole_tasrec.config import Config
from recbole_tasrec.data import convert
from recbole_tasrec.data.atomic import INTER_HEADER
from recbole_tasrec.tune.space import load_search_space
from recbole_tasrec.tune.spec import SweepError, build_spec
from tests.conftest import ROOT, small_settings

FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def no_run(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Replaces the training: a bad command line must be refused before any of it."""
    calls: list[tuple] = []

    def run(*args: object) -> dict:
        calls.append(args)
        return {"test_result": {}}

    monkeypatch.setattr(recbole_tasrec.quick_start, "run_recbole_tasrec", run)
    return calls


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI: it must exit 2 with exactly one ``error:`` line; returns that line."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def base(data_dir: Path, tmp_path: Path) -> list[str]:
    return ["--dataset", "tiny", f"--data_path={data_dir}", f"--run_dir={tmp_path / 'run'}", "--state=ERROR"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("--epochs=many", "epochs must be a whole number >= 1, got 'many'"),
        ("--epochs=2.5", "epochs must be a whole number >= 1, got 2.5"),
        ("--learning_rate=fast", "learning_rate must be a number > 0, got 'fast'"),
        ("--embedding_size=True", "embedding_size must be a whole number >= 1, got True"),
        ("--embedding_size=-8", "embedding_size must be a whole number >= 1"),
        ("--train_batch_size=0", "train_batch_size must be a whole number >= 1"),
        ("--n_layers=[2]", "n_layers must be a whole number >= 1, got [2]"),
        ("--decay=half", "decay must be a number > 0 and <= 1, got 'half'"),
        ("--day_span=0", "day_span must be a whole number >= 1, got 0"),
        ("--day_span=1.5", "day_span must be a whole number >= 1, got 1.5"),
        ("--day_span=three", "day_span must be a whole number >= 1, got 'three'"),
        ("--day_span=None", "day_span must be a whole number >= 1, got None"),
        ("--test_day_ratio=1", "test_day_ratio must be a number > 0 and < 1, got 1"),
        ("--test_day_ratio=-0.2", "test_day_ratio must be a number > 0 and < 1"),
        ("--valid_session_ratio=0", "valid_session_ratio must be a number > 0 and < 1"),
        ("--valid_session_ratio=lots", "valid_session_ratio must be a number > 0 and < 1, got 'lots'"),
        ("--MAX_ITEM_LIST_LENGTH=0", "MAX_ITEM_LIST_LENGTH must be a whole number >= 1"),
        ("--min_item_clicks=-1", "min_item_clicks must be a whole number >= 0"),
        ("--drop_unseen_targets=maybe", "drop_unseen_targets must be True or False"),
        ("--show_progress=1", "show_progress must be True or False"),
        ("--edge_weight=sometimes", "edge_weight must be one of binary, count"),
        ("--temporal_eval=later", "temporal_eval must be one of streaming, frozen"),
        ("--train_day_order=random", "train_day_order must be one of shuffle, chronological"),
        ("--lr_scheduler=cosine", "lr_scheduler must be one of plateau, paper, constant, got 'cosine'"),
        ("--lr_decay_gamma=1.5", "lr_decay_gamma must be a number > 0 and < 1, got 1.5"),
        ("--lr_patience=5", "lr_patience=5 must be smaller than stopping_step=5"),
        ("--learning_rate=1e999", "learning_rate must be a number > 0, got inf"),
        ("--port=70000", "port must be a whole number >= 1 and <= 65535, got 70000"),
        ("--DAY_FIELD=", "DAY_FIELD must be non-empty text, got ''"),
        ("--metrics=['Foo']", "There is no metric named 'Foo'"),
        ("--valid_metric=Recall@7", "unknown metric 'Recall@7'"),
        ("--valid_metric=Hit@20", "unknown metric 'Hit@20'"),
        ("--valid_metric=Recall@twenty", "unknown metric 'Recall@twenty'"),
    ],
)
def test_bad_settings_exit_2_naming_the_key(
    bad: str, message: str, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, no_run: list
) -> None:
    assert message in refused([*base(data_dir, tmp_path), bad], capsys)
    assert no_run == [] and not (tmp_path / "run").exists()


@pytest.mark.parametrize("model", ["Foo", "../../etc", "tasrec.TASRec", "SRGNN;rm"])
def test_unknown_models_exit_2(
    model: str, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, no_run: list
) -> None:
    assert f"unknown model {model!r}" in refused(["--model", model, *base(data_dir, tmp_path)], capsys)
    assert no_run == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file or directory"),
        ("epochs: [1,\n", "line 2"),
        ("- 1\n- 2\n", "it must be a YAML mapping"),
        ("epochs: 0\n", "epochs must be a whole number >= 1, got 0"),
    ],
)
def test_bad_config_files_exit_2_naming_the_file(
    content: str | None, message: str, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, no_run: list
) -> None:
    path = tmp_path / "settings.yaml"
    if content is not None:
        path.write_text(content)
    err = refused([*base(data_dir, tmp_path), "--config_files", str(path)], capsys)
    assert message in err and (content == "epochs: 0\n" or str(path) in err)
    assert no_run == []


def test_data_that_cannot_be_split_exits_2_without_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A data set of one day reaches the real run: refused when it is split, before any training or result file."""
    folder = tmp_path / "data" / "one"
    folder.mkdir(parents=True)
    rows = [f"{s}\t{s % 5 + j}\t{1_600_000_000 + 60 * s + j}" for s in range(1, 40) for j in range(3)]
    (folder / "one.inter").write_text("\n".join([INTER_HEADER, *rows]) + "\n")
    result = tmp_path / "out" / "result.json"
    argv = ["-d", "one", f"--data_path={tmp_path / 'data'}", f"--run_dir={tmp_path / 'run'}", "--state=ERROR"]
    argv += ["--min_item_clicks=1", "--topk=[5]", "--valid_metric=Recall@5", "--result-json", str(result)]
    err = refused(argv, capsys)
    assert "one spans 1 day(s)" in err
    assert not result.parent.exists() and not (tmp_path / "run" / "saved").exists()


@FAST
@given(
    key=st.sampled_from(["epochs", "day_span", "learning_rate", "test_day_ratio", "embedding_size", "decay"]),
    value=st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(
        lambda v: not v.strip().lstrip("+-").replace(".", "", 1).replace("e", "", 1).isdigit()
    ),
)
def test_any_text_for_a_number_exits_2(
    key: str, value: str, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, no_run: list
) -> None:
    """Text that is no number, for a numeric setting: exit 2, one line naming the key (RecBole's ``eval`` of the
    value may give a list, a name or an expression: all refused)."""
    err = refused([*base(data_dir, tmp_path), f"--{key}={value}"], capsys)
    assert err.startswith(f"error: {key} must be")
    assert no_run == []


# --- no setting reaches eval (RecBole's Config evals every string value) --------------------------------------------
def payload(marker: Path) -> str:
    """Python that creates ``marker`` if anything evaluates it."""
    return f"__import__('pathlib').Path({str(marker)!r}).touch()"


def test_code_on_the_command_line_is_never_run(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, no_run: list
) -> None:
    marker = tmp_path / "ran"
    err = refused([*base(data_dir, tmp_path), f"--epochs={payload(marker)}"], capsys)
    assert err.startswith("error: epochs must be a whole number >= 1, got ") and not marker.exists()
    assert no_run == []


def test_code_in_config_dict_is_never_run(data_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(ValueError, match="^learning_rate must be a number > 0, got "):
        Config("TASRec", "tiny", config_dict={**small_settings(data_dir, tmp_path), "learning_rate": payload(marker)})
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("epochs: !!python/name:os.system\n", "python/name:os.system"),  # yaml's FullLoader gives the function
        ("run_dir: !!python/object:argparse.Namespace {}\n", "python/object:argparse.Namespace"),  # any object
        ('epochs: "PAYLOAD"\n', "epochs must be a whole number >= 1"),  # a string stays a string
    ],
)
def test_a_yaml_file_builds_no_python_object(
    content: str, message: str, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, no_run: list
) -> None:
    marker, path = tmp_path / "ran", tmp_path / "settings.yaml"
    path.write_text(content.replace("PAYLOAD", payload(marker)))
    err = refused([*base(data_dir, tmp_path), "--config_files", str(path)], capsys)
    assert message in err and not marker.exists()
    assert no_run == []


def test_code_in_a_search_space_is_never_run(data_dir: Path, tmp_path: Path) -> None:
    """A fixed value of a search-space yaml reaches every trial's Config (as ``_trial`` builds it), and a tune
    command-line setting reaches the driver's."""
    marker = tmp_path / "ran"
    space = tmp_path / "space.yaml"
    space.write_text(f"n_layers: {{choice: [1, 2]}}\nlearning_rate: {payload(marker)!r}\n")
    params = {name: param.args[0] for name, param in load_search_space(space).items()}
    spec, _ = build_spec("TASRec", "tiny", load_search_space(space), (), {"data_path": str(data_dir)}, 1)
    with pytest.raises(ValueError, match="^learning_rate must be a number > 0, got "):
        Config(spec.model, spec.dataset, None, spec.trial_settings(params, tmp_path / "trial"))
    with pytest.raises(SweepError, match="^learning_rate must be a number > 0, got "):
        build_spec("TASRec", "tiny", {}, (), {"data_path": str(data_dir), "learning_rate": payload(marker)}, 1)
    assert not marker.exists()


@pytest.mark.parametrize("path", ["2024/12", "1/0", "2024", "True", "[1]"])
def test_a_path_stays_text(path: str, data_dir: Path, tmp_path: Path, capsys, no_run: list) -> None:
    """RecBole's eval made ``--run_dir=2024/12`` 168.67 and ``1/0`` a ZeroDivisionError; paths are text."""
    argv = ["--dataset", "tiny", f"--data_path={data_dir}", f"--run_dir={path}", "--state=ERROR"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    config = Config("TASRec", "tiny", cmd_args=argv[2:])
    assert config["run_dir"] == path and config["checkpoint_dir"] == str(Path(path).resolve() / "saved")
    assert Config("TASRec", "tiny", config_dict={"data_path": str(data_dir), "run_dir": path})["run_dir"] == path
    assert len(no_run) == 1


# --- the converters' command line ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "text", "message"),
    [
        (["csv", "--session-col", "s", "--item-col", "i", "--time-col", "t"], "s,i,t\n1,a,x\n", "log.csv, line 2"),
        (["csv", "--session-col", "s", "--item-col", "i", "--time-col", "t", "--sep", "::"], "s,i,t\n", "--sep"),
        (["retailrocket"], "timestamp,visitorid,event,itemid,transactionid\n1,1,view", "cut short"),
        (["diginetica"], "sessionId;userId;itemId;timeframe;eventdate\n1;NA;5;-1;2016-01-01\n", "out of range"),
        (["aotm"], "UserId\tSessionId\tItemId\tTime\tArtistId\n1\t1\t5\t1e20\t1\n", "out of range"),
    ],
)
def test_converter_cli_exits_2_with_one_line(
    argv: list[str], text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "log.csv").write_text(text)
    out = tmp_path / "out"
    assert convert.main([argv[0], "--input", str(tmp_path / "log.csv"), "--output-dir", str(out), *argv[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err
    assert not out.exists()


def test_converter_cli_cannot_write_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "log.csv").write_text("s,i,t\n1,a,5\n")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    argv = ["csv", "--input", str(tmp_path / "log.csv"), "--output-dir", str(blocker)]
    assert convert.main([*argv, "--session-col", "s", "--item-col", "i", "--time-col", "t"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert blocker.read_text() == "not a folder"


@pytest.mark.slow
def test_runner_script_bad_setting_has_no_traceback(tmp_path: Path) -> None:
    """The real script, in a subprocess: exit status 2, one error line on stderr."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "run_recbole_tasrec.py"), "--day_span=two", f"--run_dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == ["error: day_span must be a whole number >= 1, got 'two'"]
