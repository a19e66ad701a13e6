"""CSRM: the outer memory's read-out against a hand-worked example, its day-by-day updates, padding, learning,
checkpoints."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from recbole.data.interaction import Interaction

from recbole_tasrec.config import Config
from recbole_tasrec.data import TASRecDataset
from recbole_tasrec.model.csrm import CSRM
from recbole_tasrec.model.session_memory import EMPTY, OuterMemory
from tests.conftest import assert_learns_demo_set_and_checkpoint_rescores, small_settings


def hand_memory() -> OuterMemory:
    """Three rows [1, 0], [0, 1], [1, 1] written on days 0, 1, 2."""
    memory = OuterMemory(size=3, dim=2, k=2)
    memory.write(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), torch.tensor([0, 1, 2]))
    return memory


def test_read_is_a_softmax_over_the_k_most_similar_rows_by_cosine() -> None:
    # cos([1, 0], rows) = 1, 0, 1/sqrt(2); the top 2 are rows 0 and 2, weighted softmax(1, 1/sqrt(2))
    memory = hand_memory()
    query = torch.tensor([[1.0, 0.0]])
    w0 = math.e / (math.e + math.exp(1 / math.sqrt(2)))  # 0.57272
    expected = w0 * torch.tensor([1.0, 0.0]) + (1 - w0) * torch.tensor([1.0, 1.0])
    torch.testing.assert_close(memory.read(query, memory.readable_in_training(1)), expected.unsqueeze(0))


def test_evaluation_reads_only_rows_of_earlier_days_and_an_empty_read_returns_the_query() -> None:
    memory = hand_memory()
    query = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    read = memory.read(query, memory.readable_before(torch.tensor([2, 0])))
    w0 = math.e / (math.e + 1)  # day 2 sees rows 0 and 1 only (cosines 1 and 0): 0.73106
    torch.testing.assert_close(read[0], torch.tensor([w0, 1 - w0]))
    torch.testing.assert_close(read[1], query[1])  # day 0: nothing earlier


def test_the_memory_keeps_the_most_recent_rows_and_commits_a_day_once_it_is_over() -> None:
    memory = hand_memory()
    memory.stage(torch.tensor([[2.0, 2.0], [3.0, 3.0]]), torch.tensor([3, 4]))
    assert memory.memory_day.tolist() == [0, 1, 2]
    memory.commit_before(torch.tensor(4))  # day 3 is over, day 4 is not
    assert memory.memory_day.tolist() == [1, 2, 3]  # the oldest row made room
    assert memory.memory[-1].tolist() == [2.0, 2.0]
    assert memory.staging_day.tolist()[0] == 4 and memory.staging[0].tolist() == [3.0, 3.0]
    memory.write(torch.tensor([[5.0, 5.0]]), torch.tensor([9]))  # training: commit everything, then append
    assert memory.memory_day.tolist() == [3, 4, 9]


def test_memory_sizes_are_checked() -> None:
    with pytest.raises(ValueError, match="memory_size"):
        OuterMemory(size=0, dim=2, k=1)


@pytest.fixture(scope="module")
def setup(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    config = Config(
        "CSRM", "tiny", config_dict=small_settings(data_dir, tmp_path_factory.mktemp("runs"), memory_size=64, k=8)
    )
    dataset = TASRecDataset(config)
    train, valid, test = dataset.build()
    torch.manual_seed(0)
    model = CSRM(config, train)
    model.train()
    model.calculate_loss(train.inter_feat[torch.arange(100)]).backward()  # fills the memory: 64 training rows
    model.calculate_loss(train.inter_feat[torch.arange(100, 150)]).backward()  # reads them, then writes
    return model.eval(), dataset, valid, test


def test_a_training_batch_is_written_after_it_is_read(setup) -> None:
    model, dataset, _, _ = setup
    assert (model.memory.memory_day < dataset.n_days).all()  # 64 rows of the 100, all filled


def test_padding_and_batch_mates_never_change_a_sessions_scores(setup) -> None:
    model, _, valid, _ = setup
    model = copy.deepcopy(model)
    model.memory_eval = "frozen"  # reads only: every call sees the same memory
    lengths = valid.inter_feat[model.ITEM_SEQ_LEN]
    rows = torch.cat([torch.nonzero(lengths == 1).flatten()[:3], torch.nonzero(lengths > 3).flatten()[:5]])
    batch = valid.inter_feat[rows]
    seq, seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    garbage = torch.randint(1, model.n_items, (len(rows), seq.size(1) + 4))
    wide = torch.where(
        torch.arange(garbage.size(1)).unsqueeze(0) < seq_len.unsqueeze(1), torch.nn.functional.pad(seq, (0, 4)), garbage
    )
    day = batch[model.day_field]
    with torch.no_grad():
        scores = model.full_sort_predict(batch)
        padded = model.full_sort_predict(
            Interaction({model.ITEM_SEQ: wide, model.ITEM_SEQ_LEN: seq_len, model.day_field: day})
        )
        alone = torch.cat([model.full_sort_predict(valid.inter_feat[rows[i : i + 1]]) for i in range(len(rows))])
    assert scores.shape == (len(rows), model.n_items) and torch.isfinite(scores).all()
    torch.testing.assert_close(padded, scores)
    torch.testing.assert_close(alone, scores, rtol=1e-4, atol=1e-5)


def test_streaming_evaluation_never_lets_a_day_read_its_own_or_later_samples(setup) -> None:
    """Score each test day in two batches, with rows of a future day planted in the memory: scrambling what the
    first batch staged (its own day) and the future rows must not move the second batch's scores; scrambling
    the earlier days' rows must."""
    model, dataset, _, test = setup
    model = copy.deepcopy(model)
    days = test.inter_feat[dataset.day_field].long()
    model.memory.write(torch.randn(4, model.memory.memory.size(1)), torch.full((4,), dataset.n_days))
    for t in days.unique().tolist():
        rows = torch.nonzero(days == t).flatten()
        first, second = test.inter_feat[rows[: len(rows) // 2]], test.inter_feat[rows[len(rows) // 2 :]]
        with torch.no_grad():
            model.full_sort_predict(first)
            assert (model.memory.staging_day[model.memory.staging_day != EMPTY] == t).all()  # held back
            own_or_later, earlier = copy.deepcopy(model), copy.deepcopy(model)
            scores = model.full_sort_predict(second)
            own_or_later.memory.staging.normal_()
            late = own_or_later.memory.memory_day >= t
            own_or_later.memory.memory[late] = torch.randn(int(late.sum()), model.memory.memory.size(1))
            assert torch.equal(own_or_later.full_sort_predict(second), scores), f"day {t} read its own day or later"
            earlier.memory.memory.normal_()
            assert not torch.allclose(earlier.full_sort_predict(second), scores)


def test_the_memory_is_in_the_checkpoint(setup) -> None:
    model, _, _, test = setup
    state = copy.deepcopy(model.state_dict())
    assert {"memory.memory", "memory.memory_day", "memory.staging", "memory.staging_day"} <= set(state)
    fresh = copy.deepcopy(model)
    fresh.memory.memory.zero_()
    fresh.load_state_dict(state)
    batch = test.inter_feat[torch.arange(32)]
    with torch.no_grad():
        torch.testing.assert_close(copy.deepcopy(model).full_sort_predict(batch), fresh.full_sort_predict(batch))


@pytest.mark.slow
def test_csrm_learns_the_demo_set_and_a_checkpoint_gives_the_same_scores(tmp_path: Path) -> None:
    # measured (these settings, seeds 1 2 3): test Recall@20 0.156 0.172 0.139 (spread 0.033), most popular 0.102;
    # the margin is the lowest seed less the spread. The paper's lr 5e-4 needs more than 2 epochs here (0.082).
    settings = {
        "run_dir": str(tmp_path),
        "show_progress": False,
        "state": "WARNING",
        "epochs": 2,
        "embedding_size": 32,
        "hidden_size": 32,
        "train_batch_size": 128,
        "learning_rate": 0.005,
        "seed": 1,
    }
    # the checkpoint holds the memory as the best epoch's validation left it: the test days stream on from there
    assert_learns_demo_set_and_checkpoint_rescores("CSRM", settings, factor=1.05)
