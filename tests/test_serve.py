"""SessionRecommender: a checkpoint alone serves recommendations and folds in new days (Eq. 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recbole_tasrec import load_data_and_model
from recbole_tasrec.data.clicks import transition_pairs
from recbole_tasrec.serve import SessionRecommender
from tests.conftest import TrainedRun, first_test_samples


@pytest.fixture(scope="module")
def trained(trained_tasrec: TrainedRun):
    return trained_tasrec.checkpoint, load_data_and_model(trained_tasrec.checkpoint)


def test_scores_match_the_model_on_the_graph_after_the_last_day(trained) -> None:
    checkpoint, (_, model, dataset, _, _, test_data) = trained
    model.eval()
    recommender = SessionRecommender.from_checkpoint(checkpoint)
    assert recommender.day == dataset.n_days
    batch, sessions = first_test_samples(test_data, dataset, model, 12)
    tokens = dataset.field2id_token[dataset.iid_field]
    batch[dataset.day_field] = torch.full((len(sessions),), float(dataset.n_days))
    with torch.no_grad():
        expected = model.full_sort_predict(batch)
    got = recommender.scores(sessions)
    assert torch.allclose(got[:, 1:], expected[:, 1:], atol=1e-5)
    top = recommender.recommend(sessions, k=5)
    assert all(len(row) == 5 and "[PAD]" not in row for row in top)
    assert top[0] == [str(tokens[i]) for i in expected[0, 1:].topk(5).indices.add(1).tolist()]


def test_advance_day_folds_in_one_day(trained) -> None:
    checkpoint, (_, _, dataset, _, _, _) = trained
    recommender = SessionRecommender.from_checkpoint(checkpoint)
    tokens = dataset.field2id_token[dataset.iid_field]
    day = [[tokens[1], tokens[2], tokens[3]], [tokens[4], "never-seen", tokens[5]], [tokens[6]]]
    expected = recommender.graph.copy()
    ids = np.array([1, 2, 3, 4, 5, 6])
    expected.advance(*transition_pairs(np.array([0, 0, 0, 1, 1, 2]), ids))
    before = recommender.scores([[tokens[1]]])
    assert recommender.advance_day(day).counts == {"transitions": 3}  # 1->2, 2->3, 4->5 (the unknown item is skipped)
    assert recommender.day == dataset.n_days + 1
    assert (recommender.graph.weights() != expected.weights()).nnz == 0
    assert not torch.allclose(before, recommender.scores([[tokens[1]]]))
    recommender.advance_day([])  # an empty day only decays
    assert recommender.day == dataset.n_days + 2


def test_bad_requests_are_named(trained) -> None:
    checkpoint, _ = trained
    recommender = SessionRecommender.from_checkpoint(checkpoint)
    assert recommender.recommend([["never-seen"]]) == [[]]
    with pytest.raises(ValueError, match="at least one session"):
        recommender.recommend([])
    with pytest.raises(TypeError, match="list of sessions"):
        recommender.recommend(["a", "b"])


def test_the_recommender_needs_a_model_on_the_serving_graph(trained) -> None:
    _, (_, model, _, _, _, _) = trained
    with pytest.raises(TypeError, match="ServingGraphs"):
        SessionRecommender(model)  # a training model scores each day with its own graph
