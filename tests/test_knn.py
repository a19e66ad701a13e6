"""SKNN, V-SKNN and STAN: hand-computed scores, batch shapes and masks, no leakage from later days, and a run on
the demo set through run_recbole_tasrec that beats most-popular."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from recbole_tasrec import load_data_and_model, prepare_data, run_recbole_tasrec
from recbole_tasrec.config import Config, get_model
from recbole_tasrec.data.clicks import DayClicks
from recbole_tasrec.data.dataset import TEST, TRAIN
from recbole_tasrec.model.session_knn import NeighbourScoring, SessionIndex
from recbole_tasrec.model.stan import STANScoring
from recbole_tasrec.model.vsknn import VSKNNScoring
from recbole_tasrec.trainer import TASRecTrainer
from tests.conftest import most_popular_recall_at_20

MODELS = ["SKNN", "VSKNN", "STAN"]
N_ITEMS = 6  # 0 is padding


def hand_index() -> SessionIndex:
    """Three training sessions and one test session: 1 = [1, 2, 3] (day 0), 2 = [2, 4] (day 0),
    3 = [3, 1, 5, 3] (day 1), 4 = [2, 3] (day 2, test). Session id 0 does not exist."""
    sessions = [(1, [1, 2, 3]), (2, [2, 4]), (3, [3, 1, 5, 3]), (4, [2, 3])]
    clicks = DayClicks(
        session=np.array([s for s, items in sessions for _ in items]),
        item=np.array([i for _, items in sessions for i in items]),
        offsets=np.array([0, 5, 9, 11]),
    )
    day = np.array([-1, 0, 0, 1, 2])
    split = np.array([-1, TRAIN, TRAIN, TRAIN, TEST], dtype=np.int8)
    return SessionIndex.from_clicks(clicks, day, split, N_ITEMS)


def score(scoring: NeighbourScoring, sessions: list[list[int]], day: int, width: int = 4) -> np.ndarray:
    seq = torch.zeros((len(sessions), width), dtype=torch.long)
    for row, items in enumerate(sessions):
        seq[row, : len(items)] = torch.tensor(items)
    lengths = torch.tensor([len(items) for items in sessions])
    return scoring.scores(seq, lengths, torch.full((len(sessions),), day)).double().numpy()


# --- the index and the hand-computed example --------------------------------------------------------------
def test_index_keeps_last_positions_and_sizes() -> None:
    index = hand_index()
    assert index.positions.toarray()[3].tolist() == [0, 2, 0, 4, 0, 3]  # 3 = [3, 1, 5, 3]: 3 last at 4
    assert index.size.tolist() == [0, 3, 2, 3, 2]
    assert index.start_rank[1] < index.start_rank[2] < index.start_rank[3] < index.start_rank[4]


def test_sknn_cosine_scores_by_hand() -> None:
    scoring = NeighbourScoring(hand_index(), k=2, sample_size=10, streaming=True)
    # [1, 3]: sessions 1 and 3 share both items, cos = 2 / sqrt(2 * 3); session 2 shares none
    cos = 2 / math.sqrt(6)
    expected = [0, 2 * cos, cos, 2 * cos, 0, cos]
    np.testing.assert_allclose(score(scoring, [[1, 3]], day=2)[0], expected, rtol=1e-6)
    # k = 1 and a tie: the more recent session (3) wins
    top1 = NeighbourScoring(hand_index(), k=1, sample_size=10, streaming=True)
    np.testing.assert_allclose(score(top1, [[1, 3]], day=2)[0], [0, cos, 0, cos, 0, cos], rtol=1e-6)
    # a length-1 session [2]: session 2 (1 / sqrt 2) beats session 1 (1 / sqrt 3)
    np.testing.assert_allclose(score(top1, [[2]], day=2)[0], [0, 0, 0.5**0.5, 0, 0.5**0.5, 0], rtol=1e-6)
    # sample_size = 1: only the most recent candidate (session 3) is compared at all
    recent = NeighbourScoring(hand_index(), k=2, sample_size=1, streaming=True)
    np.testing.assert_allclose(score(recent, [[1, 3]], day=2)[0], [0, cos, 0, cos, 0, cos], rtol=1e-6)


def test_vsknn_scores_by_hand() -> None:
    scoring = VSKNNScoring(hand_index(), k=2, sample_size=10, streaming=True, idf_weighting=1.0)
    # [2, 3]: w(2) = 1/2, w(3) = 1; sim = dot / 2 distinct items: s1 0.75, s2 0.25, s3 0.5 -> s1, s3
    idf = {1: math.log(3 / 2), 2: math.log(3 / 2), 3: math.log(3 / 2), 4: math.log(3), 5: math.log(3)}
    expected = [0, 1.25 * (1 + idf[1]), 0.75 * (1 + idf[2]), 1.25 * (1 + idf[3]), 0, 0.5 * (1 + idf[5])]
    np.testing.assert_allclose(score(scoring, [[2, 3]], day=2)[0], expected, rtol=1e-6)


def test_stan_scores_by_hand() -> None:
    scoring = STANScoring(hand_index(), k=2, sample_size=10, streaming=True, lambdas=(1.0, 1.0, 1.0))
    e = math.exp
    # [2, 3] on day 2: w1(2) = e^-1, w1(3) = 1; sim2 = dot / sqrt(2 |n|) * e^-(2 - day(n))
    sim = {1: (e(-1) + 1) / math.sqrt(6) * e(-2), 2: e(-1) / 2 * e(-2), 3: 1 / math.sqrt(6) * e(-1)}
    assert sim[3] > sim[1] > sim[2]  # k = 2 keeps sessions 3 and 1
    # w3: the most recent shared item is 3, at position 3 in session 1 and 4 (its last) in session 3
    expected = [
        0,
        sim[1] * e(-2) + sim[3] * e(-2),  # item 1: position 1 in s1, 2 in s3
        sim[1] * e(-1),  # item 2: position 2 in s1
        sim[1] + sim[3],  # item 3: the reference itself
        0,
        sim[3] * e(-1),  # item 5: position 3 in s3
    ]
    np.testing.assert_allclose(score(scoring, [[2, 3]], day=2)[0], expected, rtol=1e-6)


def test_streaming_sees_finished_days_only() -> None:
    streaming = NeighbourScoring(hand_index(), k=5, sample_size=10, streaming=True)
    frozen = NeighbourScoring(hand_index(), k=5, sample_size=10, streaming=False)
    # session 4 = [2, 3] (test, day 2) is a neighbour of [4] only for a sample of day 3 that streams
    assert score(streaming, [[4]], day=2)[0][3] == 0
    assert score(streaming, [[2]], day=3)[0][3] > score(streaming, [[2]], day=2)[0][3]
    np.testing.assert_array_equal(score(frozen, [[2]], day=3), score(frozen, [[2]], day=2))
    # streaming on day 1 knows only day 0: session 3 (day 1) is not a neighbour, so item 5 scores 0
    assert score(streaming, [[1]], day=1)[0][5] == 0 and score(streaming, [[1]], day=2)[0][5] > 0


# --- batches: shapes, padding, length 1 ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "scoring",
    [
        NeighbourScoring(hand_index(), k=2, sample_size=10, streaming=True),
        VSKNNScoring(hand_index(), k=2, sample_size=10, streaming=True, idf_weighting=1.0),
        STANScoring(hand_index(), k=2, sample_size=10, streaming=True, lambdas=(1.0, 1.0, 1.0)),
    ],
    ids=MODELS,
)
def test_batch_rows_match_single_sessions_and_ignore_padding(scoring: NeighbourScoring) -> None:
    sessions = [[1, 3], [2], [4, 4, 2], [5]]
    batch = score(scoring, sessions, day=2, width=6)
    assert batch.shape == (4, N_ITEMS) and batch.dtype == np.float64
    for row, items in enumerate(sessions):
        np.testing.assert_allclose(batch[row], score(scoring, [items], day=2, width=len(items))[0], rtol=1e-6)
    assert (batch[:, 0] == 0).all()  # padding never scores
    assert batch[1].max() > 0


def test_bad_settings_and_batches_are_refused() -> None:
    with pytest.raises(ValueError, match="k must be a positive integer"):
        NeighbourScoring(hand_index(), k=0, sample_size=10, streaming=True)
    with pytest.raises(ValueError, match="lambda_2 must be a positive number"):
        STANScoring(hand_index(), k=2, sample_size=10, streaming=True, lambdas=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="idf_weighting must be a number >= 0"):
        VSKNNScoring(hand_index(), k=2, sample_size=10, streaming=True, idf_weighting=-1.0)
    scoring = NeighbourScoring(hand_index(), k=2, sample_size=10, streaming=True)
    with pytest.raises(ValueError, match="item_seq_len must lie in"):
        scoring.scores(torch.tensor([[1, 2]]), torch.tensor([0]), torch.tensor([2]))


# --- the demo set -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    settings = {
        "run_dir": str(tmp_path_factory.mktemp("knn-runs")),
        "show_progress": False,
        "state": "WARNING",
        "epochs": 1,
    }
    config = Config("SKNN", "sample", config_dict=settings)
    popular = most_popular_recall_at_20("SKNN", "sample", settings)  # from the training split
    return {"settings": settings, "prepared": prepare_data(config), "config": config, "popular": popular}


def build(model: str, demo: dict, **overrides: object) -> tuple[torch.nn.Module, Config]:
    config = Config(model, "sample", config_dict={**demo["settings"], **overrides})
    return get_model(model)(config, demo["prepared"].train), config


@pytest.mark.parametrize("model", MODELS)
def test_leakage_rewriting_later_days_leaves_a_day_unchanged(model: str, demo: dict) -> None:
    net, config = build(model, demo)
    data = demo["prepared"].dataset
    test = demo["prepared"].test.inter_feat
    t = data.n_train_days + 1
    clicks = data.day_clicks
    item = clicks.item.copy()
    rewrite = slice(clicks.offsets[t], None)
    item[rewrite] = np.random.default_rng(0).integers(1, net.n_items, size=len(item[rewrite]))
    index = SessionIndex.from_clicks(
        DayClicks(clicks.session, item, clicks.offsets), data.session_day, data.session_split, net.n_items
    )
    rewritten = net.build_scoring(config, index, streaming=True)
    for day, same in ((t, True), (t + 1, False)):
        rows = test[data.day_field].long() == day
        args = (test[net.ITEM_SEQ][rows], test[net.ITEM_SEQ_LEN][rows], test[data.day_field][rows].long())
        assert torch.equal(net.scoring.scores(*args), rewritten.scores(*args)) == same


@pytest.mark.parametrize("model", MODELS)
def test_predict_agrees_with_full_sort_predict(model: str, demo: dict) -> None:
    net, _ = build(model, demo)
    batch = demo["prepared"].test.inter_feat[:300]
    full = net.full_sort_predict(batch)
    assert full.shape == (300, net.n_items)
    assert torch.equal(net.predict(batch), full[torch.arange(300), batch[net.ITEM_ID]])
    assert net.calculate_loss(batch).requires_grad


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_scores_on_the_demo_set_beat_most_popular_and_reload(model: str, demo: dict) -> None:
    result = run_recbole_tasrec(model, "sample", config_dict=demo["settings"], prepared=demo["prepared"])
    recall, popular = result["test_result"]["recall@20"], demo["popular"]
    assert recall > popular + 0.05, (recall, popular)
    assert result["train_loss"] == [0.0]

    config, loaded, _, _, _, test_data = load_data_and_model(result["checkpoint"])
    reloaded = TASRecTrainer(config, loaded).evaluate(test_data, load_best_model=False, show_progress=False)
    assert {k: float(v) for k, v in reloaded.items()} == result["test_result"]
    fresh, _ = build(model, demo)
    batch = demo["prepared"].test.inter_feat[:200]
    assert torch.equal(loaded.full_sort_predict(batch), fresh.full_sort_predict(batch))
    Path(result["checkpoint"]).unlink()


def test_knn_models_refuse_a_plain_recbole_dataset(demo: dict) -> None:
    from recbole.data.dataset import SequentialDataset

    plain = SequentialDataset.__new__(SequentialDataset)
    with pytest.raises(TypeError, match="TASRecDataset"):
        get_model("SKNN")(demo["config"], plain)
