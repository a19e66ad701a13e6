"""SKNN, V-SKNN and STAN: scores computed by hand from session-rec's formulas, batch shapes and masks, no leakage
from later days, and a run on the demo set through run_recbole_tasrec that beats most-popular."""

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
from recbole_tasrec.model.vsknn import POSITION_WEIGHTS, STEP_WEIGHTS, VSKNNScoring
from recbole_tasrec.trainer import TASRecTrainer
from tests.conftest import most_popular_recall_at_20

MODELS = ["SKNN", "VSKNN", "STAN"]
N_ITEMS = 7  # 0 is padding
DAY = 86400.0
# last click of each session (Unix seconds): session 1 ends after session 2 although it starts before it
LAST_TIME = np.array([np.nan, 80000.0, 40000.0, 90000.0, 2 * DAY + 100])


def hand_index() -> SessionIndex:
    """Three training sessions and one test session: 1 = [1, 2, 3] (day 0), 2 = [2, 4] (day 0),
    3 = [3, 1, 5, 3] (day 1), 4 = [2, 3, 6] (day 2, test; item 6 is never clicked in training). Session id 0
    does not exist."""
    sessions = [(1, [1, 2, 3]), (2, [2, 4]), (3, [3, 1, 5, 3]), (4, [2, 3, 6])]
    clicks = DayClicks(
        session=np.array([s for s, items in sessions for _ in items]),
        item=np.array([i for _, items in sessions for i in items]),
        offsets=np.array([0, 5, 9, 12]),
    )
    day = np.array([-1, 0, 0, 1, 2])
    split = np.array([-1, TRAIN, TRAIN, TRAIN, TEST], dtype=np.int8)
    return SessionIndex.from_clicks(clicks, day, split, LAST_TIME, N_ITEMS)


def score(scoring: NeighbourScoring, sessions: list[list[int]], day: int, width: int = 4) -> np.ndarray:
    """Scores of ``sessions`` on ``day``, each session's last click 50 s after the day starts."""
    seq = torch.zeros((len(sessions), width), dtype=torch.long)
    for row, items in enumerate(sessions):
        seq[row, : len(items)] = torch.tensor(items)
    lengths = torch.tensor([len(items) for items in sessions])
    days = torch.full((len(sessions),), day)
    return scoring.scores(seq, lengths, days, days * DAY + 50.0).double().numpy()


# --- the index and the hand-computed example --------------------------------------------------------------
def test_index_keeps_last_positions_and_sizes() -> None:
    index = hand_index()
    assert index.positions.toarray()[3].tolist() == [0, 2, 0, 4, 0, 3, 0]  # 3 = [3, 1, 5, 3]: 3 last at 4
    assert index.size.tolist() == [0, 3, 2, 3, 3]
    assert index.start_rank[1] < index.start_rank[2] < index.start_rank[3] < index.start_rank[4]
    assert index.train_clicks.tolist() == [0, 2, 2, 3, 1, 1, 0]  # clicks, repeats counted; session 4 is test


def test_sknn_cosine_scores_by_hand() -> None:
    scoring = NeighbourScoring(hand_index(), k=2, sample_size=10, streaming=True)
    # [1, 3]: sessions 1 and 3 share both items, cos = 2 / sqrt(2 * 3); session 2 shares none
    cos = 2 / math.sqrt(6)
    expected = [0, 2 * cos, cos, 2 * cos, 0, cos, 0]
    np.testing.assert_allclose(score(scoring, [[1, 3]], day=2)[0], expected, rtol=1e-6)
    # k = 1 and a tie: the more recent session (3) wins
    top1 = NeighbourScoring(hand_index(), k=1, sample_size=10, streaming=True)
    np.testing.assert_allclose(score(top1, [[1, 3]], day=2)[0], [0, cos, 0, cos, 0, cos, 0], rtol=1e-6)
    # a length-1 session [2]: session 2 (1 / sqrt 2) beats session 1 (1 / sqrt 3)
    np.testing.assert_allclose(score(top1, [[2]], day=2)[0], [0, 0, 0.5**0.5, 0, 0.5**0.5, 0, 0], rtol=1e-6)
    # sample_size = 1: only the most recent candidate (session 3) is compared at all
    recent = NeighbourScoring(hand_index(), k=2, sample_size=1, streaming=True)
    np.testing.assert_allclose(score(recent, [[1, 3]], day=2)[0], [0, cos, 0, cos, 0, cos, 0], rtol=1e-6)
    # recency is the last click (session-rec's session_time): for [2], session 1 (ends at 80000 s) is more
    # recent than session 2 (starts later, ends at 40000 s)
    np.testing.assert_allclose(score(recent, [[2]], day=2)[0], [0, *[1 / math.sqrt(3)] * 3, 0, 0, 0], rtol=1e-6)


def test_vsknn_scores_by_hand() -> None:
    """session-rec's defaults (weighting div, weighting_score div) with its IDF at factor 1, on day 3."""
    scoring = VSKNNScoring(hand_index(), k=2, sample_size=10, streaming=True, idf_weighting=1.0)
    # [3, 6]: w(3) = 1/2, w(6) = 1; sim = dot / 2 distinct items: s4 0.75, s1 0.25, s3 0.25 (s2 shares nothing);
    # k = 2 keeps s4 and, of the tie, s3 (its last click, 90000 s, is later than s1's, 80000 s)
    # decay: s4 holds 6, the last click (j = 1); s3 holds only 3, one click further back (j = 2, div: 1/2)
    # idf = ln(3 training sessions / training clicks): item 3 has 3 clicks -> 0; item 6 has none -> 0
    idf = {1: math.log(3 / 2), 2: math.log(3 / 2), 3: 0.0, 5: math.log(3), 6: 0.0}
    s4, s3 = 0.75 * 1.0, 0.25 * 0.5
    expected = [0, s3 * (1 + idf[1]), s4 * (1 + idf[2]), (s4 + s3) * (1 + idf[3]), 0, s3 * (1 + idf[5]), s4]
    np.testing.assert_allclose(score(scoring, [[3, 6]], day=3)[0], expected, rtol=1e-6)


def test_vsknn_other_weightings_by_hand() -> None:
    """weighting log, weighting_score quadratic, no IDF: [1, 3, 2] on day 2, every candidate kept."""
    scoring = VSKNNScoring(
        hand_index(),
        k=3,
        sample_size=10,
        streaming=True,
        idf_weighting=0.0,
        weighting="log",
        weighting_score="quadratic",
    )
    w = {1: 1 / math.log10(2 + 1.7), 3: 1 / math.log10(1 + 1.7), 2: 1 / math.log10(0 + 1.7)}  # 1 / log10(l - p + 1.7)
    sim = {1: (w[1] + w[2] + w[3]) / 3, 2: w[2] / 3, 3: (w[1] + w[3]) / 3}
    decay = {1: 1.0, 2: 1.0, 3: 1 / 2**2}  # s3's last shared click is item 3, one click back (j = 2)
    s = {n: sim[n] * decay[n] for n in sim}
    expected = [0, s[1] + s[3], s[1] + s[2], s[1] + s[3], s[2], s[3], 0]
    np.testing.assert_allclose(score(scoring, [[1, 3, 2]], day=2)[0], expected, rtol=1e-6)


def test_vsknn_linear_weights_floor_at_zero() -> None:
    """session-rec's linear weights, floored at 0 (its literal form zeroes positions past 10 and goes negative)."""
    positions = np.array([1.0, 2.0, 3.0, 12.0])
    np.testing.assert_allclose(POSITION_WEIGHTS["linear"](positions, 12.0), [0, 0, 0.1, 1], atol=1e-12)
    np.testing.assert_allclose(STEP_WEIGHTS["linear"](np.array([1.0, 5.0, 10.0, 30.0])), [0.9, 0.5, 0, 0], atol=1e-12)


def stan_similarities(weights: dict[int, float], now: float) -> dict[int, float]:
    """STAN's sim2 by hand on the hand index for a current session with factor-1 ``weights`` per item,
    lambda_1 = lambda_2 (one day) = 1: the weighted cosine times exp(-(now - last click) / 1 day)."""
    members = {1: {1, 2, 3}, 2: {2, 4}, 3: {1, 3, 5}}
    norm = math.sqrt(sum(v * v for v in weights.values()))
    return {
        n: sum(weights.get(i, 0.0) for i in items)
        / (norm * math.sqrt(len(items)))
        * math.exp(-(now - LAST_TIME[n]) / DAY)
        for n, items in members.items()
    }


def test_stan_scores_by_hand() -> None:
    e = math.exp
    now = 2 * DAY + 50  # the last click of the current session
    scoring = STANScoring(hand_index(), k=2, sample_size=10, streaming=True, lambdas=(1.0, 1.0, 1.0))
    # [2, 3] on day 2: w1(2) = e^-1, w1(3) = 1
    sim = stan_similarities({2: e(-1), 3: 1.0}, now)
    assert sim[1] > sim[3] > sim[2]  # k = 2 keeps sessions 1 and 3
    # w3 from the last position in n of an item s holds: 3 at 3 in s1, 3 at 4 (its last) in s3
    expected = [
        0,
        sim[1] * e(-2) + sim[3] * e(-2),  # item 1: position 1 in s1, 2 in s3
        sim[1] * e(-1),  # item 2: position 2 in s1
        sim[1] + sim[3],  # item 3: the anchor itself
        0,
        sim[3] * e(-1),  # item 5: position 3 in s3
        0,
    ]
    np.testing.assert_allclose(score(scoring, [[2, 3]], day=2)[0], expected, rtol=1e-6)


@pytest.mark.parametrize("anchor", ["last_shared", "most_recent"])
def test_stan_item_anchors_by_hand(anchor: str) -> None:
    """[3, 2]: in s1 = [1, 2, 3] the last shared item is 3 (position 3, session-rec) while the current session's
    most recent item is 2 (position 2, the paper)."""
    e = math.exp
    scoring = STANScoring(hand_index(), 2, 10, True, lambdas=(1.0, 1.0, 1.0), item_anchor=anchor)
    sim = stan_similarities({3: e(-1), 2: 1.0}, 2 * DAY + 50)
    assert sim[1] > sim[2] > sim[3]  # k = 2 keeps sessions 1 and 2
    a1 = 3 if anchor == "last_shared" else 2  # s2 = [2, 4]: 2 at position 1 either way
    w3 = {1: e(-abs(1 - a1)), 2: e(-abs(2 - a1)), 3: e(-abs(3 - a1))}
    expected = [0, sim[1] * w3[1], sim[1] * w3[2] + sim[2], sim[1] * w3[3], sim[2] * e(-1), 0, 0]
    np.testing.assert_allclose(score(scoring, [[3, 2]], day=2)[0], expected, rtol=1e-6)


def test_streaming_sees_finished_days_only() -> None:
    streaming = NeighbourScoring(hand_index(), k=5, sample_size=10, streaming=True)
    frozen = NeighbourScoring(hand_index(), k=5, sample_size=10, streaming=False)
    # session 4 = [2, 3, 6] (test, day 2) is a neighbour only for a sample of day 3 that streams
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
    with pytest.raises(ValueError, match="weighting_score must be one of same, div, linear, quadratic, log"):
        VSKNNScoring(hand_index(), 2, 10, True, idf_weighting=0.0, weighting_score="exp")
    with pytest.raises(ValueError, match="item_anchor must be one of last_shared, most_recent"):
        STANScoring(hand_index(), 2, 10, True, lambdas=(1.0, 1.0, 1.0), item_anchor="first")
    scoring = NeighbourScoring(hand_index(), k=2, sample_size=10, streaming=True)
    with pytest.raises(ValueError, match="item_seq_len must lie in"):
        scoring.scores(torch.tensor([[1, 2]]), torch.tensor([0]), torch.tensor([2]), torch.tensor([2 * DAY]))


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
        DayClicks(clicks.session, item, clicks.offsets),
        data.session_day,
        data.session_split,
        data.session_last_time,
        net.n_items,
    )
    original, rewritten = net.scoring, net.build_scoring(config, index, streaming=True)
    for day, same in ((t, True), (t + 1, False)):
        batch = test[torch.nonzero(test[data.day_field].long() == day).squeeze(1)]
        net.scoring = original
        before = net.full_sort_predict(batch)
        net.scoring = rewritten
        assert torch.equal(before, net.full_sort_predict(batch)) == same


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
