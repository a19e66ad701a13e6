"""The comparison harness (``python -m recbole_tasrec.harness reproduce``): its report, its ranks, --resume,
--report-only and the equal tuning of --tune-trials; and the schedule report built on its results."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from recbole_tasrec.harness import reproduce as reproduce_module
from recbole_tasrec.harness import schedule_report
from recbole_tasrec.harness.__main__ import main as harness_command


@pytest.fixture(scope="module")
def reproduce() -> ModuleType:
    return reproduce_module


def harness_args(data_dir: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--dataset", "tiny", "--output-dir", str(tmp_path / "results"), f"--data_path={data_dir}",
        f"--run_dir={tmp_path / 'runs'}", "--epochs=1", "--embedding_size=16", "--hidden_size=16", "--n_layers=1",
        *extra,
    ]  # fmt: skip


def test_report_ranks_resume_and_report_only(
    reproduce: ModuleType, data_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    args = harness_args(data_dir, tmp_path, "--models", "TASRec,STAN", "--seeds", "1")
    summary = reproduce.main(args)
    results = tmp_path / "results"
    data = json.loads((results / "tiny.json").read_text())
    assert [(r["model"], r["seed"]) for r in data["runs"]] == [("TASRec", 1), ("STAN", 1)]
    for run in data["runs"]:  # the unrolled ranks give RecBole's own test Recall@20 (rounded to 4 places)
        assert run["recall@20_from_ranks"] == pytest.approx(run["test_result"]["recall@20"], abs=6e-5)
        assert run["settings"]["embedding_size"] == 16 and run["config"]["epochs"] == 1
    ranks = np.load(results / "tiny.ranks.npz")
    assert sorted(ranks.files) == ["STAN|1", "TASRec|1"] and (ranks["TASRec|1"] >= 1).all()
    assert summary["versus"]["best_other"] == "STAN"
    report = (results / "tiny.md").read_text()
    assert (
        "| TASRec | 1 |" in report and "| STAN | 1 |" in report and "TASRec minus the best other model (STAN)" in report
    )
    assert (results / "tiny.png").stat().st_size > 0

    def no_training(*_args, **_kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(reproduce, "run_one", no_training)
    assert reproduce.main([*args, "--resume"])["table"] == summary["table"]
    (results / "tiny.md").unlink()
    reproduce.main(harness_args(data_dir, tmp_path, "--report-only"))
    assert "--models TASRec,STAN" in (results / "tiny.md").read_text()  # the command of the runs, not this one


def test_report_only_without_results_says_so(reproduce: ModuleType, data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no .*tiny.json to report on"):
        reproduce.main(harness_args(data_dir, tmp_path, "--report-only"))


def test_bad_tune_trials_is_a_usage_error(reproduce: ModuleType, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        reproduce.parse_args(["--dataset", "tiny", "--tune-trials", "-1"])
    assert exit_info.value.code == 2 and "--tune-trials must be 0" in capsys.readouterr().err


@pytest.mark.slow
def test_tune_trials_choose_record_and_reuse_each_models_settings(
    reproduce: ModuleType, data_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """Two Ray Tune trials of SRGNN over its search space; the best one's settings train the seed and are in
    the json and the report; a resumed harness with one more seed reuses them without tuning again."""
    env_before = set(os.environ)
    args = harness_args(
        data_dir, tmp_path, "--models", "SRGNN", "--tune-trials", "2", "--tune-dir", str(tmp_path / "t")
    )
    try:
        reproduce.main([*args, "--seeds", "1"])
    finally:
        for key in set(os.environ) - env_before:  # the Ray token and Ray's own variables
            del os.environ[key]
    data = json.loads((tmp_path / "results" / "tiny.json").read_text())
    tuning = data["tuning"]["SRGNN"]
    assert tuning["trials"] == 2 and set(tuning["settings"]) == {
        "embedding_size",
        "step",
        "learning_rate",
        "weight_decay",
    }
    assert (tmp_path / "t" / "SRGNN" / "results.csv").read_text().count("\n") == 3  # header + 2 trials
    run = data["runs"][0]
    assert {k: run["settings"][k] for k in tuning["settings"]} == tuning["settings"]
    assert run["config"]["embedding_size"] == tuning["settings"]["embedding_size"]
    assert "Equal tuning: 2 Ray Tune trials" in (tmp_path / "results" / "tiny.md").read_text()

    def no_tuning(*_args, **_kwargs):
        raise AssertionError("the model was tuned again")

    monkeypatch.setattr(reproduce, "tune_model", no_tuning)
    reproduce.main([*args, "--seeds", "2", "--resume"])
    runs = json.loads((tmp_path / "results" / "tiny.json").read_text())["runs"]
    assert [r["seed"] for r in runs] == [1, 2]
    assert runs[1]["settings"]["learning_rate"] == tuning["settings"]["learning_rate"]


def write_harness_result(results: Path, name: str, ranks: dict[str, np.ndarray]) -> None:
    """A harness result as the harness writes it, as far as the schedule report reads it."""
    (results / name).parent.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps({"name": name, "runs": []}))
    np.savez_compressed(results / f"{name}.ranks.npz", **ranks)


def test_schedule_report_verdicts(tmp_path: Path) -> None:
    """Default (plateau) best, tied with constant, within noise of the best, or worse, from per-sample ranks."""
    report = schedule_report
    rng = np.random.default_rng(0)
    good = rng.integers(1, 15, 400)  # ranks: about 95 % within the top 20
    bad = rng.integers(1, 60, 400)  # about a third within the top 20
    noisy = good.copy()
    noisy[:3] = 100  # three samples fall out: within noise
    results = tmp_path / "results"
    write_harness_result(results, "schedules/log-paper", {"A|1": bad, "B|1": good, "C|1": good})
    write_harness_result(results, "schedules/log-constant", {"A|1": good, "B|1": noisy, "C|1": good})
    write_harness_result(results, "log", {"A|1": good, "B|1": bad, "C|1": noisy})  # the default, from the harness
    rows = {
        row["model"]: row for row in report.main(["--datasets", "log", "--models", "A,B,C", "--results", str(results)])
    }
    assert rows["A"]["verdict"] == "best (the same ranks as constant)"
    assert rows["B"]["verdict"] == "worse" and rows["B"]["best"] == "paper" and rows["B"]["p_value"] < 0.05
    assert rows["C"]["verdict"] == "within noise" and rows["C"]["default_minus_best"] == pytest.approx(-3 / 400)
    assert rows["C"]["plateau"]["file"] == "log.json"
    text = (results / "schedules" / "summary.md").read_text()
    assert "| log (400 tests) | B |" in text and (results / "schedules" / "summary.png").stat().st_size > 0


def test_harness_command_names_its_tools_and_runs_one(capsys) -> None:
    """``python -m recbole_tasrec.harness``: without a known tool it lists the tools; with one, that tool runs."""
    with pytest.raises(SystemExit, match="(?s)unknown tool 'nonsense'.*reproduce.*schedules"):
        harness_command(["nonsense"])
    with pytest.raises(SystemExit) as exit_info:
        harness_command(["schedules", "--help"])
    assert exit_info.value.code == 0 and "--datasets" in capsys.readouterr().out
