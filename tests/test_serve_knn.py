"""Serving SKNN, V-SKNN and STAN: exported as plain arrays, answering as the model's full_sort_predict, extended
day by day."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from recbole_tasrec import load_data_and_model, run_recbole_tasrec
from recbole_tasrec.serve import DayAlreadyFolded, KNNRecommender, load_artifact
from recbole_tasrec.serve.cli import main
from recbole_tasrec.serve.http import create_app
from recbole_tasrec.serve.ranking import Ranker
from tests.conftest import first_test_samples, served, small_settings

#: no cut-off of neighbours on the tiny set, so SKNN's scores are a plain sum that a test can recompute
WIDE = {"k": 100_000, "sample_size": 100_000}


@pytest.fixture(scope="module", params=["SKNN", "VSKNN", "STAN"])
def run(request, data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    run_dir = tmp_path_factory.mktemp(f"knn-{request.param}")
    extra = WIDE if request.param == "SKNN" else {"idf_weighting": 2.0} if request.param == "VSKNN" else {}
    result = run_recbole_tasrec(request.param, "tiny", config_dict=small_settings(data_dir, run_dir, **extra))
    artefact = run_dir / "model"
    assert main(["export", "--checkpoint", result["checkpoint"], "--output", str(artefact)]) == 0
    return result["checkpoint"], load_data_and_model(result["checkpoint"]), artefact


def test_served_answers_equal_full_sort_predict(run) -> None:
    _, (_, model, dataset, _, _, test_data), artefact = run
    knn = load_artifact(artefact)
    assert isinstance(knn, KNNRecommender) and knn.day == dataset.n_days
    assert json.loads((artefact / "meta.json").read_text())["model"] == type(model).__name__
    batch, sessions = first_test_samples(test_data, dataset, model, 40)
    batch[model.day_field] = torch.full((len(sessions),), dataset.n_days)  # the first day after the data
    batch[model.time_list_field] = torch.full(batch[model.ITEM_SEQ].shape, knn.state.clock, dtype=torch.float64)
    model.eval()
    expected = model.full_sort_predict(batch)
    got = knn.scores(sessions)
    assert expected[:, 1:].abs().sum() > 0
    assert torch.allclose(got[:, 1:], expected[:, 1:], rtol=1e-5, atol=1e-6)
    assert torch.isinf(got[:, 0]).all()  # the padding item is never recommended


def test_advance_extends_the_index_and_survives_a_restart(run, tmp_path: Path) -> None:
    _, _, artefact = run
    knn = load_artifact(artefact)
    tokens = knn.item_tokens
    before = knn.index.positions.shape[0]
    day = [[tokens[1], tokens[2], tokens[3]], [tokens[2], "brand-new", tokens[4]], ["brand-new"]]
    target = tmp_path / "model"
    advance = knn.advance_and_save(day, target)
    assert advance.counts == {"indexed_sessions": 2} and knn.day == advance.base.day + 1
    assert knn.index.positions.shape[0] == before + 2
    assert knn.index.day[-2:].tolist() == [advance.base.day] * 2  # sessions of the day just finished
    with pytest.raises(DayAlreadyFolded):
        knn.advanced(day)
    restarted = load_artifact(target)
    probe = [[tokens[2]], [tokens[1], tokens[3]], [tokens[7]]]
    assert restarted.day == knn.day and torch.equal(restarted.scores(probe), knn.scores(probe))
    assert restarted.state.clock == knn.state.clock == advance.base.clock + 86400.0


@pytest.mark.parametrize("run", ["SKNN"], indirect=True)  # its scores are a plain sum of cosines
def test_sknn_advance_adds_each_new_sessions_cosine(run) -> None:
    _, _, artefact = run
    knn = load_artifact(artefact)
    tokens = knn.item_tokens
    query = [tokens[5], tokens[6]]
    day = [[tokens[5], tokens[9], tokens[9], tokens[10]], [tokens[6], tokens[5], tokens[11]], [tokens[12]]]
    before = knn.scores([query])[0]
    knn.advance_day(day)
    after = knn.scores([query])[0]
    expected = torch.zeros_like(before)
    for session in day:  # sim(s, n) = |s ∩ n| / sqrt(|s| |n|), added to every item of n
        items = {int(np.flatnonzero(tokens == t)[0]) for t in session}
        shared = len(items & {5, 6})
        for item in items:
            expected[item] += shared / np.sqrt(2 * len(items))
    assert torch.allclose((after - before)[1:], expected[1:], atol=1e-5)


def test_http_serves_a_knn_artefact(run) -> None:
    _, _, artefact = run
    knn = load_artifact(artefact)
    tokens = knn.item_tokens
    sessions = [[tokens[3], tokens[8]], ["ghost"]]
    with served(create_app(load_artifact(artefact))) as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = json.dumps({"sessions": sessions, "k": 5})
        connection.request("POST", "/recommend", body, {"Content-Type": "application/json"})
        answer = json.loads(connection.getresponse().read())
    assert answer["day"] == knn.day
    assert [r["items"] for r in answer["results"]] == Ranker(knn).rank(sessions, 5).items
