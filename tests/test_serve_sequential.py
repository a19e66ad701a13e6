"""Serving RecBole's sequential models, LESSR and CSRM from a plain-tensor artefact (answers equal to the model's
full_sort_predict), CSRM's memory advanced as evaluation advances it, and advances that train the weights."""

from __future__ import annotations

import copy
import http.client
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from recbole_tasrec import load_data_and_model, run_recbole_tasrec
from recbole_tasrec.harness.random_model import random_recommender
from recbole_tasrec.serve import NeuralRecommender, day_training, load_artifact
from recbole_tasrec.serve.artifact import WEIGHTS, read_artifact
from recbole_tasrec.serve.cli import main
from recbole_tasrec.serve.day_training import TrainOptions, prefix_samples, sample_batch, train_copy, training_settings
from recbole_tasrec.serve.http import create_app
from recbole_tasrec.serve.ranking import Ranker
from recbole_tasrec.serve.sequential import SEQUENTIAL_MODELS, build_model
from tests.conftest import first_test_samples, served, small_settings

TOKEN = "test-token-0123456789abcdef"
#: a small memory, so that one day's rows change what CSRM reads
CSRM_SETTINGS = {"memory_size": 300, "k": 20}


@pytest.fixture(scope="module", params=SEQUENTIAL_MODELS)
def run(request, data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A 1-epoch run of the model on the tiny set, exported; the checkpoint loaded with its data set."""
    run_dir = tmp_path_factory.mktemp(f"seq-{request.param}")
    extra = CSRM_SETTINGS if request.param == "CSRM" else {}
    result = run_recbole_tasrec(request.param, "tiny", config_dict=small_settings(data_dir, run_dir, **extra))
    artefact = run_dir / "model"
    assert main(["export", "--checkpoint", result["checkpoint"], "--output", str(artefact)]) == 0
    return load_data_and_model(result["checkpoint"]), artefact


def test_served_answers_equal_full_sort_predict(run) -> None:
    (_, model, dataset, _, _, test_data), artefact = run
    model = copy.deepcopy(model)  # CSRM's evaluation writes into its memory: the fixture's stays as loaded
    served_model = load_artifact(artefact)
    assert isinstance(served_model, NeuralRecommender) and served_model.day == dataset.n_days
    assert json.loads((artefact / "meta.json").read_text())["model"] == type(model).__name__
    batch, sessions = first_test_samples(test_data, dataset, model, 40)
    tokens = dataset.field2id_token[dataset.iid_field]
    batch[dataset.day_field] = torch.full((len(sessions),), float(served_model.day))  # the first day after the data
    model.eval()
    with torch.no_grad():
        expected = model.full_sort_predict(batch)
    got = served_model.scores(sessions)
    assert torch.allclose(got[:, 1:], expected[:, 1:], rtol=1e-5, atol=1e-5)
    assert torch.isinf(got[:, 0]).all()  # the padding item is never recommended
    assert served_model.recommend(sessions[:1], k=5)[0] == [
        str(tokens[i]) for i in expected[0, 1:].topk(5).indices.add(1).tolist()
    ]


def day_of(tokens: np.ndarray, seed: int = 1, n: int = 25) -> list[list[str]]:
    """A day of ``n`` random sessions of 2..6 known items."""
    rng = np.random.default_rng(seed)
    return [[str(tokens[i]) for i in rng.integers(1, len(tokens), rng.integers(2, 7))] for _ in range(n)]


@pytest.mark.parametrize("run", ["CSRM"], indirect=True)
def test_csrm_advance_writes_the_day_into_memory_as_streaming_evaluation_does(run) -> None:
    (_, model, _, _, _, _), artefact = run
    model = copy.deepcopy(model)
    csrm = load_artifact(artefact)
    tokens, day = csrm.item_tokens, csrm.day
    sessions, probe = day_of(tokens), day_of(tokens, seed=2, n=8)
    before = csrm.scores(probe)
    advance = csrm.advance_day(sessions)
    assert advance.counts == {"memory_rows": sum(len(s) - 1 for s in sessions)} and csrm.day == day + 1

    # the run's own model, evaluated as streaming evaluation goes: the day's samples, then the next day's
    ids, session_of, _ = csrm.encode(sessions)
    seq, lengths, _ = prefix_samples(ids, np.bincount(session_of), model.max_seq_length)
    probe_seq, probe_lengths = csrm.padded(probe)
    model.eval()
    with torch.no_grad():
        model.full_sort_predict(sample_batch(model, seq, lengths, day))  # stages the day's rows
        expected = model.full_sort_predict(sample_batch(model, probe_seq, probe_lengths, day + 1))  # commits them
    after = csrm.scores(probe)
    assert torch.allclose(after[:, 1:], expected[:, 1:], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(after[:, 1:], before[:, 1:], atol=1e-4)  # the new rows were read


def test_prefix_samples_are_recboles() -> None:
    items, counts = np.array([5, 6, 7, 8, 9, 3]), np.array([4, 1, 1])  # sessions [5 6 7 8], [9], [3]
    seq, lengths, targets = prefix_samples(items, counts, max_len=2)
    assert seq.tolist() == [[5, 0], [5, 6], [6, 7]] and lengths.tolist() == [1, 2, 2] and targets.tolist() == [6, 7, 8]


def day_loss(model: torch.nn.Module, recommender, sessions) -> float:
    ids, session_of, _ = recommender.encode(sessions)
    seq, lengths, targets = prefix_samples(ids, np.bincount(session_of), recommender.max_seq_length)
    model.eval()
    with torch.no_grad():
        return float(model.calculate_loss(sample_batch(model, seq, lengths, recommender.day - 1, targets)))


@pytest.mark.parametrize("run", ["GRU4Rec", "CSRM"], indirect=True)
def test_training_on_a_day_changes_the_weights_and_serves_them(run, tmp_path: Path) -> None:
    _, artefact = run
    recommender = load_artifact(artefact)
    sessions, probe = day_of(recommender.item_tokens), day_of(recommender.item_tokens, seed=3, n=6)
    old = recommender.model
    old_weights = {name: t.clone() for name, t in old.state_dict().items()}
    advance = recommender.advance_and_save(sessions, tmp_path / "model", TrainOptions(epochs=5, learning_rate=0.01))
    assert advance.counts["training_samples"] == sum(len(s) - 1 for s in sessions)
    new = recommender.model
    assert new is not old and all(torch.equal(t, old.state_dict()[n]) for n, t in old_weights.items())  # aside
    assert not torch.equal(new.item_embedding.weight, old.item_embedding.weight)
    assert day_loss(new, recommender, sessions) < day_loss(old, recommender, sessions)  # it learned the day

    # the artefact written holds the new weights: a model rebuilt from it scores as the service does
    saved = read_artifact(tmp_path / "model")
    rebuilt = build_model(saved.settings, saved.meta["n_items"])
    rebuilt.load_state_dict(saved.tensors[WEIGHTS])
    restarted = load_artifact(tmp_path / "model")
    seq, lengths = recommender.padded(probe)
    rebuilt.eval()
    if hasattr(rebuilt, "memory"):
        rebuilt.memory.commit_before(torch.tensor(recommender.day))
    with torch.no_grad():
        expected = rebuilt.full_sort_predict(sample_batch(rebuilt, seq, lengths, recommender.day))
    assert torch.allclose(recommender.scores(probe)[:, 1:], expected[:, 1:], rtol=1e-5, atol=1e-5)
    assert torch.equal(restarted.scores(probe), recommender.scores(probe))
    assert Ranker(recommender).rank(probe, 5).items[0] == [
        str(recommender.item_tokens[i]) for i in expected[0, 1:].topk(5).indices.add(1).tolist()
    ]


@pytest.mark.parametrize("run", ["GRU4Rec"], indirect=True)
def test_requests_during_a_training_advance_are_answered_from_the_old_state(run, monkeypatch) -> None:
    _, artefact = run
    recommender = load_artifact(artefact)
    sessions, probe = day_of(recommender.item_tokens), day_of(recommender.item_tokens, seed=4, n=6)
    old_scores, old_day = recommender.scores(probe), recommender.day
    trained, answered = threading.Event(), threading.Event()

    def train_then_wait(*args, **kwargs):  # the new weights exist, not yet swapped in
        result = train_copy(*args, **kwargs)
        trained.set()
        assert answered.wait(30)
        return result

    monkeypatch.setattr(day_training, "train_copy", train_then_wait)
    worker = threading.Thread(target=recommender.advance_day, args=(sessions, TrainOptions(3, 0.01)))
    worker.start()
    assert trained.wait(120)
    during = Ranker(recommender).rank(probe, 5)
    assert during.day == old_day and torch.equal(recommender.scores(probe), old_scores)
    answered.set()
    worker.join(30)
    assert recommender.day == old_day + 1 and not torch.allclose(recommender.scores(probe), old_scores)


def test_tasrec_trains_a_day_on_the_graph_that_scored_it() -> None:
    recommender = random_recommender(40, days=2, sessions_per_day=30, embedding_size=8, n_layers=1)
    sessions = day_of(recommender.item_tokens, n=30)
    base = recommender.state
    options = TrainOptions(epochs=2, learning_rate=0.01)
    torch.manual_seed(0)
    advance = recommender.advance_day(sessions, options)
    assert advance.state.graph.day == base.graph.day + 1 and recommender.model is not base.model

    ids, session_of, _ = recommender.encode(sessions)
    seq, lengths, targets = prefix_samples(ids, np.bincount(session_of), recommender.max_seq_length)
    samples = sample_batch(base.model, seq, lengths, base.day, targets)

    def trained_on(source) -> torch.Tensor:
        torch.manual_seed(0)
        with recommender.graphs.pinned(source):
            model, _ = train_copy(base.model, recommender.settings, samples, base.day, options)
        return model.item_embedding.weight

    served_weights = recommender.model.item_embedding.weight
    assert torch.equal(served_weights, trained_on(base.source))  # the graph before the day
    assert not torch.equal(served_weights, trained_on(advance.state.source))


def test_cli_advance_trains_only_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recommender = random_recommender(40, days=2, sessions_per_day=30, embedding_size=8, n_layers=1)
    model_dir = recommender.save(tmp_path / "model")
    day = tmp_path / "day.csv"
    rows = [(s, item) for s, session in enumerate(day_of(recommender.item_tokens)) for item in session]
    day.write_text("session_id,item_id\n" + "".join(f"{s},{item}\n" for s, item in rows))
    assert main(["advance", "--model", str(model_dir), "--input", str(day), "--learning-rate", "0.1"]) == 2
    assert "add --train" in capsys.readouterr().err
    args = ["advance", "--model", str(model_dir), "--input", str(day), "--train", "--train-epochs", "0"]
    assert main(args) == 2 and "--train-epochs" in capsys.readouterr().err
    args[-1] = "1"
    assert main([*args, "--learning-rate", "0.05"]) == 0
    assert "training samples" in capsys.readouterr().out
    after = read_artifact(model_dir).tensors[WEIGHTS]["item_embedding.weight"]
    assert not torch.equal(after, recommender.model.item_embedding.weight)


@pytest.mark.parametrize("run", ["GRU4Rec"], indirect=True)
def test_http_advance_trains_with_train_true(run, tmp_path: Path) -> None:
    _, artefact = run
    recommender = load_artifact(artefact)
    old = recommender.model
    with served(create_app(recommender, None, advance_token=TOKEN)) as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        body = {"sessions": day_of(recommender.item_tokens), "train": True, "learning_rate": 0.01}
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
        connection.request("POST", "/advance", json.dumps(body), headers)
        response = connection.getresponse()
        answer = json.loads(response.read())
    assert response.status == 200 and answer["training_samples"] > 0
    assert recommender.model is not old and not torch.equal(recommender.model.item_embedding.weight,
                                                            old.item_embedding.weight)  # fmt: skip


def test_a_knn_model_refuses_to_train(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_recbole_tasrec("SKNN", "tiny", config_dict=small_settings(data_dir, tmp_path / "run"))
    assert main(["export", "--checkpoint", result["checkpoint"], "--output", str(tmp_path / "model")]) == 0
    knn = load_artifact(tmp_path / "model")
    with pytest.raises(ValueError, match="no weights to train"):
        knn.advance_day(day_of(knn.item_tokens), TrainOptions())
    assert knn.day == read_artifact(tmp_path / "model").meta["day"]  # nothing changed
    day = tmp_path / "day.csv"
    day.write_text(f"session_id,item_id\n1,{knn.item_tokens[1]}\n1,{knn.item_tokens[2]}\n")
    assert main(["advance", "--model", str(tmp_path / "model"), "--input", str(day), "--train"]) == 2
    assert "no weights to train" in capsys.readouterr().err


def test_an_artefact_records_the_continual_rate_as_training_would_use_it() -> None:
    """Unset, a day's rate is the rate training ended with times continual_learning_rate_scale; an absolute rate
    is kept; a run from before the scale existed counts it as 1."""
    config = {"learner": "adam", "learning_rate": 1e-3, "weight_decay": 0.0, "train_batch_size": 64,
              "continual_epochs": 3, "continual_learning_rate": None, "seed": 1, "loss_type": "CE"}  # fmt: skip
    scaled = training_settings({**config, "continual_learning_rate_scale": 0.3}, ended_with=1e-4)
    assert scaled["continual_learning_rate"] == pytest.approx(3e-5)
    assert training_settings(config, ended_with=1e-4)["continual_learning_rate"] == pytest.approx(1e-4)
    absolute = {**config, "continual_learning_rate": 2e-4, "continual_learning_rate_scale": 1.0}
    assert training_settings(absolute, ended_with=1e-4)["continual_learning_rate"] == 2e-4
