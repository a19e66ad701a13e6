"""Ray Tune sweeps (``recbole_tasrec.tune``).

Search spaces are parsed without Ray. The sweeps are real: small TASRec trials (1 to 3 epochs) on a generated data
set, on a local Ray started once for this module, and on a cluster that ``ray start`` runs for one test.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import ray
from ray.tune.schedulers import ASHAScheduler

from recbole_tasrec.config import Config, properties_dir
from recbole_tasrec.data.synthetic import SyntheticConfig
from recbole_tasrec.data.synthetic import write as write_data
from recbole_tasrec.quick_start import prepare_data
from recbole_tasrec.tune import main
from recbole_tasrec.tune.ray_env import init_ray
from recbole_tasrec.tune.report import summarize
from recbole_tasrec.tune.space import (
    Param,
    SearchSpaceError,
    default_num_samples,
    load_search_space,
    parse_recbole_space,
    parse_space,
)
from recbole_tasrec.tune.spec import SweepError, SweepOptions, build_spec, driver_config
from recbole_tasrec.tune.sweep import evaluate_trial_checkpoint, make_scheduler, run_sweep

#: 8 days of 30 sessions: a trial trains in seconds (fewer than 100 items survive the filters, hence topk)
MINI = SyntheticConfig(n_items=150, sessions_per_day=30, n_days=8, seed=3)
#: Fixed settings of every sweep here.
FAST = ["--train_batch_size=64", "--eval_batch_size=256", "--seed=7", "--state=WARNING", "--topk=[10,20]"]
FAST_SETTINGS = {"train_batch_size": 64, "eval_batch_size": 256, "seed": 7, "state": "WARNING", "topk": [10, 20]}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def sweep_args(data_dir: Path, output_dir: Path, space: Path, *extra: str) -> list[str]:
    return [
        "--dataset", "tiny", f"--data_path={data_dir}", "--search", str(space), "--max-epochs", "1",
        "--output-dir", str(output_dir), *FAST, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data_path holding the ``tiny`` data set (smaller than conftest's: every sweep here trains)."""
    root = tmp_path_factory.mktemp("atomic")
    write_data(MINI, root, "tiny")
    return root


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One private local Ray with 2 CPUs for the module's in-process sweeps (the CLI reuses a started Ray)."""
    env_before = set(os.environ)
    init_ray(num_cpus=2)
    yield
    ray.shutdown()
    for key in set(os.environ) - env_before:  # init_ray's token and Ray's own variables
        del os.environ[key]


# --- search spaces, no Ray ---------------------------------------------------------------------------------------
def test_own_format_reads_every_distribution_and_fixed_values() -> None:
    space = parse_space(
        {
            "embedding_size": {"grid": [50, 100]},
            "n_layers": {"choice": [1, 2, 3]},
            "dropout_prob": {"uniform": [0.0, 0.5]},
            "decay": {"quniform": [0.25, 0.75, 0.25]},
            "learning_rate": {"loguniform": [1e-4, 1e-2]},
            "step": {"randint": [1, 4]},
            "train_batch_size": 128,
            "dropout_probs": [0.25, 0.5],  # a list without a distribution is a fixed value
        }
    )
    assert space["embedding_size"] == Param("grid", (50, 100))
    assert space["learning_rate"] == Param("loguniform", (1e-4, 1e-2))
    assert space["decay"] == Param("quniform", (0.25, 0.75, 0.25))
    assert space["train_batch_size"] == Param("fixed", (128,))
    assert space["dropout_probs"] == Param("fixed", ([0.25, 0.5],))
    assert parse_space({name: param.to_yaml() for name, param in space.items()}) == space  # round trip
    ray_space = {name: param.to_ray() for name, param in space.items()}
    assert ray_space["embedding_size"] == {"grid_search": [50, 100]}
    assert (ray_space["learning_rate"].lower, ray_space["learning_rate"].upper) == (1e-4, 1e-2)
    assert (ray_space["step"].lower, ray_space["step"].upper) == (1, 4)  # Ray's randint: upper excluded
    assert ray_space["train_batch_size"] == 128
    assert default_num_samples(space) == 10  # random draws: 10 trials
    assert default_num_samples({"d": Param("grid", (1, 2)), "k": Param("fixed", (3,))}) == 1  # the grid, once


def test_own_format_file_reads_scientific_notation_like_recbole(tmp_path: Path) -> None:
    space = load_search_space(write(tmp_path / "s.yaml", "learning_rate: {loguniform: [1e-4, 1e-2]}\n"))
    assert space["learning_rate"] == Param("loguniform", (1e-4, 1e-2))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"lr": {"logunif": [1, 2]}}, "unknown distribution 'logunif'"),
        ({"lr": {"uniform": [0.5, 0.1]}}, "low < high"),
        ({"lr": {"uniform": [0.1]}}, "takes 2 numbers"),
        ({"lr": {"loguniform": [0, 1]}}, "must be > 0"),
        ({"step": {"randint": [1, 2.5]}}, "two integers"),
        ({"step": {"choice": []}}, "at least one value"),
        ({"step": {"choice": 3}}, "takes a list"),
        ({"x": {"uniform": ["a", 1]}}, "is not a number"),
        ({"x": {"choice": [1], "grid": [2]}}, "one-key mapping"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_own_format_errors_name_the_setting(data: object, message: str) -> None:
    with pytest.raises(SearchSpaceError, match=message):
        parse_space(data, "space.yaml: ")


def test_recbole_format_with_natural_log_bounds(tmp_path: Path) -> None:
    path = write(
        tmp_path / "model.hyper",
        "# RecBole's run_hyper.py format\n"
        "learning_rate loguniform -8,0\n"
        "embedding_size choice [64,96,128]\n"
        "mlp_hidden_size choice ['[64,64]','[128]']\n"
        "dropout_prob uniform 0.1,0.5\n"
        "\n"
        "decay quniform 0.2, 0.8, 0.1\n",
    )
    space = load_search_space(path)
    assert space["learning_rate"].kind == "loguniform"
    assert space["learning_rate"].args == pytest.approx((math.exp(-8), 1.0))  # RecBole's bounds are logs
    assert space["embedding_size"] == Param("choice", (64, 96, 128))
    assert space["mlp_hidden_size"] == Param("choice", ("[64,64]", "[128]"))
    assert space["dropout_prob"] == Param("uniform", (0.1, 0.5))
    assert space["decay"] == Param("quniform", (0.2, 0.8, 0.1))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr normal 0,1\n", "unknown kind 'normal'"),
        ("size choice [64,\n", "cannot read"),
        ("lr uniform a,b\n", "comma-separated numbers"),
        ("lr loguniform -2\n", "takes 2 numbers"),
        ("lr\n", "expected 'name kind value'"),
    ],
)
def test_recbole_format_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(SearchSpaceError, match=f"line 1: .*{message}"):
        parse_recbole_space(text)


def test_shipped_search_spaces() -> None:
    hyper = properties_dir() / "hyper"
    for path in hyper.glob("*.yaml"):
        assert load_search_space(path), path
    default = load_search_space(hyper / "TASRec.yaml")
    for knob in ["embedding_size", "n_layers", "learning_rate", "dropout_prob", "weight_decay", "step",
                 "neighbor_threshold", "edge_weight", "decay"]:  # fmt: skip
        assert default[knob].kind != "fixed", knob
    paper = load_search_space(hyper / "TASRec-paper.yaml")
    assert paper["embedding_size"] == Param("grid", (50, 100, 150, 200))
    assert paper["n_layers"] == Param("grid", (1, 2, 3, 4, 5))
    assert {name for name, param in paper.items() if param.kind == "grid"} == {"embedding_size", "n_layers"}


def test_default_asha_never_stops_a_trial_at_its_last_epoch(data_dir: Path) -> None:
    spec, _ = build_spec("TASRec", "tiny", {"n_layers": Param("choice", (1, 2))}, (), {"data_path": str(data_dir)}, 5)
    asha = make_scheduler(spec, SweepOptions())
    assert "Iter 4.000" in asha.debug_string() and "Iter 5.000" not in asha.debug_string()
    assert make_scheduler(spec, SweepOptions(scheduler="fifo")) is None
    spec.max_epochs = 1  # no epoch before the last: nothing to stop
    assert make_scheduler(spec, SweepOptions()) is None


# --- errors: one line, exit code 2 --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "NoSuchModel"], "unknown model 'NoSuchModel'"),
        (["--metric", "Recall@7"], "unknown metric 'Recall@7'"),
        (["--search", "{missing}"], "cannot read search space"),
        (["--search", "{bad}"], "unknown distribution 'gird'"),
        (["--search", "{data_key}"], "shapes the data set"),
        (["--dataset", "nowhere"], "data set 'nowhere' not found"),
        (["--epochs"], "cannot read '--epochs' as a RecBole setting"),
        (["--resume", "--output-dir", "{missing}"], "no sweep to resume"),
        (["--storage-path", "s3://bucket/sweeps"], "not a URI"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    args: list[str], message: str, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {
        "missing": tmp_path / "missing.yaml",
        "bad": write(tmp_path / "bad.yaml", "embedding_size: {gird: [8, 16]}\n"),
        "data_key": write(tmp_path / "data_key.yaml", "day_span: {choice: [1, 2]}\n"),
    }
    args = [arg.format(**files) for arg in args]
    assert main(["--dataset", "tiny", f"--data_path={data_dir}", *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("error: ") and "Traceback" not in err


def test_no_cluster_at_address_is_a_clear_error() -> None:
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for address in [f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"]:
        with pytest.raises(SweepError, match=f"no Ray cluster at {address}"):
            init_ray(address)
    with pytest.raises(SweepError, match="expected auto, HOST:PORT"):
        init_ray("somewhere")


# --- real sweeps on a local Ray ------------------------------------------------------------------------------
@pytest.mark.slow  # Ray
def test_local_sweep_writes_results_best_yaml_and_plot(
    local_ray: None, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = write(tmp_path / "space.yaml", "embedding_size: {grid: [8, 16]}\nn_layers: 1\n")
    out = tmp_path / "sweep"
    assert main(sweep_args(data_dir, out, space)) == 0
    printed = capsys.readouterr().out
    assert printed.count("] done ") == 2  # one line per finished trial

    results = pd.read_csv(out / "results.csv")
    assert sorted(results["embedding_size"]) == [8, 16]
    assert list(results["status"]) == ["done", "done"]
    assert list(results["epochs"]) == [1, 1]
    scores = list(results["valid/recall@20"])
    assert scores == sorted(scores, reverse=True)  # ranked by the validation metric
    assert results["test/recall@20"].between(0, 1).all()
    best = results.iloc[0]
    assert f"best: {best['trial']} (embedding_size={best['embedding_size']})" in printed
    assert "test/recall@20" not in printed and f"recall@20={best['test/recall@20']:.4f}" in printed

    for trial in results["trial"]:  # each trial's RecBole output in its own folder
        assert list((out / trial / "log").rglob("*.log"))
        assert len(list((out / trial / "saved").glob("*.pth"))) == 1

    config = Config(config_file_list=[str(out / "best.yaml")])  # model and data set come from the file
    assert (config["model"], config["dataset"]) == ("TASRec", "tiny")
    assert config["embedding_size"] == best["embedding_size"] and config["n_layers"] == 1
    assert (config["epochs"], config["train_batch_size"], config["seed"]) == (1, 64, 7)
    assert (out / "valid_curves.png").read_bytes().startswith(PNG_SIGNATURE)

    # --resume of a finished sweep runs nothing again and reports the same trials
    assert main(["--resume", "--output-dir", str(out)]) == 0
    assert "] done " not in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), results)

    # the best checkpoint, evaluated again (what a stopped best trial gets), gives the trial's own test metrics
    settings = {"data_path": str(data_dir), **FAST_SETTINGS}
    spec, _ = build_spec("TASRec", "tiny", load_search_space(space), (), settings, 1)
    prepared = prepare_data(driver_config(spec.model, spec.dataset, spec.config_files, spec.settings))
    params = {"embedding_size": int(best["embedding_size"]), "n_layers": 1}
    again = evaluate_trial_checkpoint(spec, params, out / best["trial"], Path(best["checkpoint"]), prepared)
    assert again["recall@20"] == pytest.approx(best["test/recall@20"], abs=1e-4)


@pytest.fixture(scope="module")
def stopped_and_crashed(local_ray: None, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """One sweep of two 3-epoch trials: 'streaming' trains, 'sideways' makes TASRec's constructor raise.

    The scheduler is Ray's ASHA, told that no trial may run past epoch 1: it must stop the training trial at its
    first report. The crashing trial gets one retry.
    """
    space = {
        "temporal_eval": Param("grid", ("streaming", "sideways")),
        "embedding_size": Param("fixed", (8,)),
        "n_layers": Param("fixed", (1,)),
    }
    spec, _ = build_spec("TASRec", "tiny", space, (), {"data_path": str(data_dir), **FAST_SETTINGS}, 3)
    out = tmp_path_factory.mktemp("sweep")
    asha = ASHAScheduler(time_attr="epoch", max_t=1, grace_period=1)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # the per-trial lines
        run_sweep(spec, out, SweepOptions(max_concurrent=1, max_failures=1), scheduler=asha)
    report = summarize(spec, out)
    return spec, report, printed.getvalue()


@pytest.mark.slow  # Ray
def test_scheduler_stops_a_trial_early_and_its_checkpoint_is_tested(stopped_and_crashed: tuple) -> None:
    spec, report, printed = stopped_and_crashed
    record = next(r for r in report.records if r.params["temporal_eval"] == "streaming")
    assert record.status == "stopped" and f"[{record.name}] stopped " in printed
    assert record.curve and len(record.curve) < spec.max_epochs  # it reported fewer epochs than allowed
    assert record.checkpoint is not None
    # the best trial by validation, so its best checkpoint was tested after the sweep
    assert report.best is record and 0 <= record.test["test/recall@20"] <= 1
    row = report.table.set_index("trial").loc[record.name]
    assert row["status"] == "stopped" and row["epochs"] == 1


@pytest.mark.slow  # Ray
def test_a_crashing_trial_is_retried_reported_and_the_sweep_finishes(stopped_and_crashed: tuple) -> None:
    _, report, printed = stopped_and_crashed
    results = pd.read_csv(report.output_dir / "results.csv").set_index("temporal_eval")
    assert list(results.index) == ["streaming", "sideways"]  # failed trials rank last
    assert results.loc["sideways", "status"] == "error"
    assert "temporal_eval must be one of" in results.loc["sideways", "error"]
    failed = results.loc["sideways", "trial"]
    assert f"[{failed}] retrying" in printed and f"[{failed}] error " in printed
    assert (report.output_dir / failed / "error.txt").is_file()
    assert (report.output_dir / "best.yaml").is_file()  # the sweep finished with the other trial


# --- a real cluster -----------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster() -> Iterator[tuple[str, dict[str, str], Path]]:
    """A one-node cluster from ``ray start --head``, on free ports, with token authentication.

    It runs with ``--block`` in its own process group; the finalizer stops that ``ray start`` and then its group.
    ``ray stop`` would stop every Ray on the machine, other people's included.
    """
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=secrets.token_hex(32),
        # the nodes share this virtual environment: no need for Ray to rebuild it per worker under `uv run`
        RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
    )
    command = [
        str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
        "--include-dashboard=false", f"--temp-dir={temp_dir}", f"--ray-client-server-port={_free_port()}",
        f"--dashboard-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}", "--disable-usage-stats",
    ]  # fmt: skip
    log = Path(temp_dir) / "ray-start.log"
    with open(log, "w") as output:
        head = subprocess.Popen(command, env=env, start_new_session=True, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if head.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ray start failed: {log.read_text()[-2000:]}") from None
                time.sleep(0.5)
        yield f"127.0.0.1:{port}", env, Path(temp_dir)
    finally:
        head.send_signal(signal.SIGTERM)  # ray start drains the node and ends the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        with contextlib.suppress(ProcessLookupError):  # any straggler of that process group
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow  # Ray
def test_sweep_on_a_running_cluster(
    ray_cluster: tuple[str, dict[str, str], Path], data_dir: Path, tmp_path: Path
) -> None:
    address, env, cluster_dir = ray_cluster
    space = write(tmp_path / "space.yaml", "embedding_size: {grid: [8, 16]}\nn_layers: 1\n")
    out = tmp_path / "shared" / "sweep"
    # one trial at a time: the second reuses the first one's worker (the other tests run trials side by side)
    args = [*sweep_args(data_dir, out, space), "--address", address, "--max-concurrent", "1"]
    command = [sys.executable, "-m", "recbole_tasrec.tune", *args]
    with subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as run:
        stdout, stderr = run.communicate(timeout=400)
    assert run.returncode == 0, stderr[-3000:]
    assert stdout.count("] done ") == 2
    results = pd.read_csv(out / "results.csv")
    assert list(results["status"]) == ["done", "done"]
    assert Config(config_file_list=[str(out / "best.yaml")])["embedding_size"] == results.loc[0, "embedding_size"]
    # the command was a driver of that cluster (Ray logs each driver under the cluster's own folder)
    assert list(cluster_dir.glob(f"session_*/logs/python-core-driver-*_{run.pid}.log"))


def test_tune_flag_of_the_main_command_reaches_the_sweep(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from recbole_tasrec.cli import build_parser
    from recbole_tasrec.cli import main as cli_main

    assert "--tune" in build_parser().format_help()
    assert cli_main(["--tune", "--dataset", "tiny", f"--data_path={data_dir}", "--model", "NoSuchModel"]) == 2
    assert "unknown model 'NoSuchModel'" in capsys.readouterr().err


def test_the_runners_tune_flag_is_an_alias_of_the_sweep_command(capsys: pytest.CaptureFixture[str]) -> None:
    from recbole_tasrec.cli import main as cli_main
    from recbole_tasrec.tune import main as tune_main

    helps = []
    for command in (lambda: tune_main(["--help"]), lambda: cli_main(["--tune", "--help"])):
        with pytest.raises(SystemExit):
            command()
        helps.append(" ".join(capsys.readouterr().out.split()))  # the usage lines wrap at other places
    assert helps[0].split("examples:")[1] == helps[1].split("examples:")[1]  # the examples name the one command
    helps = [text.split("examples:")[0] for text in helps]
    # one parser: the same help, under the name it was called by
    assert helps[1] == helps[0].replace("python -m recbole_tasrec.tune", "run_recbole_tasrec.py --tune")
    assert "usage: run_recbole_tasrec.py --tune [-h]" in helps[1]


@pytest.mark.slow  # a fresh interpreter (about 10 s: torch and RecBole)
def test_help_and_usage_errors_do_not_import_ray() -> None:
    script = (
        "import contextlib, io, sys\n"
        "from recbole_tasrec.tune.cli import main\n"
        "assert 'ray' not in sys.modules, 'imported with the module'\n"
        "with contextlib.redirect_stderr(io.StringIO()):\n"
        "    assert main(['--epochs']) == 2\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "assert 'ray' not in sys.modules, 'imported by --help or a usage error'\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_help_explains_grid_repeats_and_cluster_flags() -> None:
    from recbole_tasrec.tune.cli import build_parser

    text = " ".join(build_parser().format_help().split())
    assert "each sample repeats the whole grid, as in Ray Tune" in text
    for flag in ["--address", "--storage-path", "--cpus-per-trial", "--gpus-per-trial", "--max-concurrent",
                 "--scheduler", "--resume", "--max-failures", "--search"]:  # fmt: skip
        assert flag in text
