"""``python -m recbole_tasrec.serve``: export, recommend and advance from the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from recbole_tasrec import run_recbole_tasrec
from recbole_tasrec.serve import SessionRecommender
from recbole_tasrec.serve.cli import main
from tests.conftest import ROOT, small_settings


@pytest.fixture(scope="module")
def checkpoint(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    run_dir = tmp_path_factory.mktemp("serve-cli")
    return run_recbole_tasrec("TASRec", "tiny", config_dict=small_settings(data_dir, run_dir))["checkpoint"]


@pytest.fixture()
def model_dir(checkpoint: str, tmp_path: Path) -> Path:
    assert main(["export", "--checkpoint", checkpoint, "--output", str(tmp_path / "model")]) == 0
    return tmp_path / "model"


def write_clicks(path: Path, sessions: dict[str, list[str]]) -> Path:
    rows = [(sid, item) for sid, items in sessions.items() for item in items]
    pd.DataFrame(rows, columns=["session_id", "item_id"]).to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_module_entry_point_exports(checkpoint: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "recbole_tasrec.serve", "export", "--checkpoint", checkpoint, "--output", "m"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("exported ") and (tmp_path / "m" / "meta.json").is_file()


def test_recommend_writes_the_top_k_of_every_session(model_dir: Path, tmp_path: Path, capsys) -> None:
    recommender = SessionRecommender.from_artifact(model_dir)
    tokens = list(recommender.item_tokens)
    sessions = {"s1": [tokens[3], tokens[4]], "s2": [tokens[8], "never-seen"], "s3": ["never-seen"]}
    clicks = write_clicks(tmp_path / "sessions.csv", sessions)
    out = tmp_path / "recs.csv"
    argv = ["recommend", "--model", str(model_dir), "--input", str(clicks), "--k", "5", "--output", str(out)]
    assert main(argv) == 0
    assert "3 sessions, 5 clicks" in capsys.readouterr().out
    recs = pd.read_csv(out, dtype={"item_id": str})
    assert list(recs.columns) == ["session_id", "rank", "item_id", "score"]
    assert recs.groupby("session_id").size().to_dict() == {"s1": 5, "s2": 5}  # s3: unknown items only
    expected = recommender.scores([sessions["s2"]])[0].topk(5)
    s2 = recs[recs.session_id == "s2"]
    assert s2["item_id"].tolist() == [tokens[i] for i in expected.indices.tolist()]
    assert s2["rank"].tolist() == [1, 2, 3, 4, 5]
    assert torch.allclose(torch.tensor(s2["score"].to_numpy(), dtype=torch.float32), expected.values, atol=1e-4)

    assert main([*argv[:-1], str(out), "--exclude-seen"]) == 0
    s1 = pd.read_csv(out, dtype={"item_id": str}).query("session_id == 's1'")
    assert not set(s1["item_id"]) & set(sessions["s1"]) and len(s1) == 5


def test_advance_folds_a_day_in_and_saves_it(model_dir: Path, tmp_path: Path, capsys) -> None:
    recommender = SessionRecommender.from_artifact(model_dir)
    tokens = list(recommender.item_tokens)
    day = {"a": [tokens[1], tokens[2], tokens[3]], "b": [tokens[4], "brand-new", tokens[5]]}
    inter = tmp_path / "day.inter"
    # a RecBole .inter file whose clicks are not in time order: the timestamps decide
    inter.write_text(
        "session_id:token\titem_id:token\ttimestamp:float\n"
        f"a\t{tokens[2]}\t20\na\t{tokens[1]}\t10\nb\t{tokens[4]}\t5\nb\tbrand-new\t6\na\t{tokens[3]}\t30\n"
        f"b\t{tokens[5]}\t7\n"
    )
    assert main(["advance", "--model", str(model_dir), "--input", str(inter)]) == 0
    line = capsys.readouterr().out
    assert f"day {recommender.day} -> {recommender.day + 1}" in line and "3 transitions" in line
    assert "1 new item ids skipped" in line
    recommender.advance_day(list(day.values()))
    advanced = SessionRecommender.from_artifact(model_dir)
    assert advanced.day == recommender.day
    assert (advanced.graph.weights() != recommender.graph.weights()).nnz == 0


def test_bad_inputs_stop_with_one_line_and_no_output(model_dir: Path, checkpoint: str, tmp_path: Path, capsys):
    out = tmp_path / "recs.csv"
    bad = tmp_path / "bad.csv"
    bad.write_text("session,item\n1,2\n")
    cases = [
        (["recommend", "--model", str(model_dir), "--input", str(bad), "--output", str(out)], "no 'session_id'"),
        (
            [
                "recommend",
                "--model",
                str(tmp_path / "nope"),
                "--input",
                str(bad),
                "--output",
                str(out),
                "--session-col",
                "session",
                "--item-col",
                "item",
            ],
            "no serving artefact",
        ),  # fmt: skip
        (["recommend", "--model", str(model_dir), "--input", str(bad), "--k", "0", "--output", str(out)], "--k"),
        (["export", "--checkpoint", str(bad), "--output", str(tmp_path / "x")], "is not a readable checkpoint"),
        (["export", "--checkpoint", checkpoint, "--output", str(bad)], "choose a new folder"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "x").exists()
