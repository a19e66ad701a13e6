"""The bounded int8 top-k (serve/topk.py): its error bound holds item by item, its candidates always hold the
exact top-k, its answer is torch.topk's on random, near-tied, tied, outlier and masked data, and the Ranker
uses it above ``bounded_topk_above`` items with the same recommendations. The blocked top-k of a score matrix
(``topk_rows``) gives torch.topk's values, ties and masked items included."""

from __future__ import annotations

import pytest
import torch

from recbole_tasrec.serve import topk as topk_module
from recbole_tasrec.serve.topk import BLOCK, BoundedTopK, topk_rows


def _table(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * 0.1, torch.randn(5, d, generator=g)


def _exact(table: torch.Tensor, queries: torch.Tensor, k: int, exclude=None) -> tuple[torch.Tensor, torch.Tensor]:
    scores = queries.double() @ table.double().t()
    if exclude is not None:
        scores[exclude] = float("-inf")
    return torch.topk(scores, k, dim=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_first_pass_is_within_its_bound_for_every_item(seed: int) -> None:
    table, queries = _table(3000, 24, seed)
    table[7] *= 1000  # an outlier row
    index = BoundedTopK(table)
    approx, parts = index._first_pass(queries, None)
    query, items = torch.meshgrid(torch.arange(5), torch.arange(3000), indexing="ij")
    bound = index._bound(query.reshape(-1), items.reshape(-1), parts).view(5, 3000)
    b = queries.abs().amax(1, keepdim=True) / 127
    exact = queries.double() @ table.double().t()
    gap = (exact - approx.double() * b.double()).abs()
    assert bool((gap <= bound.double() * b.double()).all())
    assert float((gap / (bound * b)).max()) > 0.05  # the bound is no vacuous giant: some item comes close


@pytest.mark.parametrize(("seed", "k"), [(0, 1), (1, 5), (2, 20), (3, 50)])
def test_random_tables_give_torch_topk(seed: int, k: int) -> None:
    table, queries = _table(20000, 32, seed)
    values, items = BoundedTopK(table).topk(queries, k)
    expected = _exact(table, queries, k)
    assert torch.equal(items, expected.indices)
    torch.testing.assert_close(values.double(), expected.values, rtol=1e-5, atol=1e-6)


def test_more_queries_than_a_group_and_k_above_the_item_count() -> None:
    table, _ = _table(500, 16, 4)
    queries = torch.randn(topk_module.GROUP * 2 + 3, 16, generator=torch.Generator().manual_seed(5))
    values, items = BoundedTopK(table).topk(queries, 10)
    assert torch.equal(items, _exact(table, queries, 10).indices)
    assert BoundedTopK(table).topk(queries[:2], 10_000)[0].shape == (2, 500)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_near_ties_at_the_kth_place_are_ranked_exactly(seed: int) -> None:
    """300 items within 1e-4 of each other around the k-th score: far inside the int8 error, so the answer
    rests on the exact re-scoring of every candidate the bound lets through."""
    g = torch.Generator().manual_seed(seed)
    table, queries = _table(20000, 32, seed)
    base = table[0] * 0 + queries[0] / queries[0].norm() * 2.0
    near = torch.randperm(20000, generator=g)[:300]
    table[near] = base + 1e-4 * torch.randn(300, 32, generator=g)
    values, items = BoundedTopK(table).topk(queries[:1], 20)
    expected = _exact(table, queries[:1], 20)
    assert set(items[0].tolist()) <= set(near.tolist())
    assert torch.equal(items, expected.indices)


@pytest.mark.parametrize("seed", [0, 1])
def test_candidates_always_hold_the_exact_top_k(seed: int) -> None:
    table, queries = _table(20000, 32, seed)
    exclude = (torch.tensor([0, 0, 3]), torch.tensor([5, 9, 11]))
    index = BoundedTopK(table)
    query, items = index.candidates(queries, 20, exclude)
    kept = set(zip(query.tolist(), items.tolist(), strict=True))
    expected = _exact(table, queries, 20, exclude).indices
    assert all((row, int(item)) in kept for row in range(5) for item in expected[row])
    assert len(kept) < 20000 * 5 * 0.01  # and few others: the bound did the work


def test_exact_ties_return_tied_items_with_the_exact_scores() -> None:
    table, queries = _table(5000, 16, 6)
    table[100:140] = table[3] * 0 + queries[0] / queries[0].norm() * 3  # 40 identical rows, the best of all
    values, items = BoundedTopK(table).topk(queries[:1], 25)
    assert set(items[0].tolist()) <= set(range(100, 140))
    torch.testing.assert_close(values[0], (table[100] @ queries[0]).expand(25))


def test_excluded_items_never_come_back() -> None:
    table, queries = _table(20000, 32, 7)
    best = _exact(table, queries, 3).indices
    exclude = (torch.arange(5).repeat_interleave(3), best.reshape(-1))
    values, items = BoundedTopK(table).topk(queries, 10, exclude)
    assert not bool((items.unsqueeze(2) == best.unsqueeze(1)).any())
    assert torch.equal(items, _exact(table, queries, 10, exclude).indices)


def test_when_the_bound_cannot_help_the_exact_scan_answers() -> None:
    """Every row equal (every score tied) and a zero query: the bound keeps everything, the fallback ranks."""
    table = torch.ones(1000, 8)
    table[10] = 2.0
    index = BoundedTopK(table)
    queries = torch.stack([torch.ones(8), torch.zeros(8)])
    assert index.candidates(queries, 5) is None
    values, items = index.topk(queries, 5)
    assert items[0, 0] == 10 and torch.equal(values[0], torch.tensor([16.0, 8, 8, 8, 8]))
    assert torch.equal(values[1], torch.zeros(5))


def test_a_table_without_a_bound_is_refused() -> None:
    table = torch.zeros(10, 4)
    table[3, 1] = float("nan")
    with pytest.raises(ValueError, match="inf or NaN"):
        BoundedTopK(table)
    zero_rows = torch.zeros(10, 4)
    zero_rows[2] = 1.0
    assert BoundedTopK(zero_rows).topk(torch.ones(1, 4), 1)[1].item() == 2


def test_the_ranker_gives_the_same_recommendations_above_the_threshold() -> None:
    """A TASRec of 3,000 items ranked by the full score matrix and by the int8 index: the same items, in the
    same order, with the same scores; seen items excluded, per-session k, a session of unknown items only."""
    import numpy as np

    from recbole_tasrec.config import Config
    from recbole_tasrec.data.temporal_graph import TemporalGraph
    from recbole_tasrec.serve import SessionRecommender
    from recbole_tasrec.serve.ranking import Ranker

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 3001
    graph = TemporalGraph(n)
    graph.advance(rng.integers(1, n, 20000), rng.integers(1, n, 20000))
    config = Config("TASRec", "sample", config_dict={"state": "WARNING", "embedding_size": 16})
    tokens = np.array(["[PAD]", *(f"i{j}" for j in range(1, n))])
    recommender = SessionRecommender.from_state(config, tokens, None, "cpu", graph)
    sessions = [[f"i{j}" for j in rng.integers(1, n, length)] for length in rng.integers(1, 8, 40)]
    sessions += [["unknown"], ["i5", "unknown", "i5"]]
    ks = rng.integers(1, 30, len(sessions)).tolist()
    exclude = (np.arange(len(sessions)) % 2 == 0).tolist()
    recommender.bounded_topk_above = 0
    full = Ranker(recommender).rank(sessions, ks, exclude)
    recommender.bounded_topk_above = 1000
    ranker = Ranker(recommender)
    bounded = ranker.rank(sessions, ks, exclude)
    assert ranker._index is not None  # the index did answer
    assert bounded.items == full.items and bounded.unknown == full.unknown
    assert bounded.items[-2] == [] and all(len(row) == k for row, k in zip(bounded.items[:-2], ks[:-2], strict=True))
    np.testing.assert_allclose(np.concatenate(bounded.scores), np.concatenate(full.scores), rtol=1e-5, atol=1e-6)


def test_the_serving_cli_refuses_a_negative_threshold(tmp_path, capsys) -> None:
    from recbole_tasrec.serve.cli import main

    args = ["--bounded-topk-above", "-1", "recommend", "--model", str(tmp_path), "--input", "x.csv", "--output", "y"]
    (tmp_path / "x.csv").write_text("session_id,item_id\n1,a\n")
    args[args.index("x.csv")] = str(tmp_path / "x.csv")
    assert main(args) == 2
    assert "--bounded-topk-above must be 0" in capsys.readouterr().err


@pytest.mark.parametrize("n", [7, BLOCK, BLOCK * 20, BLOCK * 20 + 13, 40_000])
@pytest.mark.parametrize("k", [1, 20, 64])
def test_the_blocked_top_k_gives_torch_topk(n: int, k: int) -> None:
    g = torch.Generator().manual_seed(n + k)
    k = min(k, n)
    for scores in (
        torch.randn(5, n, generator=g),
        torch.randint(0, 4, (5, n), generator=g).float(),  # many ties, across blocks
        torch.randn(5, n, generator=g).masked_fill(torch.rand(5, n, generator=g) < 0.9, float("-inf")),
    ):
        scores[1] = float("-inf")  # a row without a candidate
        scores[:, 0] = float("-inf")  # the padding item
        values, items = topk_rows(scores, k)
        expected = torch.topk(scores, k, dim=1).values
        assert torch.equal(values, expected)
        assert torch.equal(scores.gather(1, items), values)  # each item carries its value
        finite = torch.isfinite(values)
        assert all(len(set(row[mask].tolist())) == int(mask.sum()) for row, mask in zip(items, finite, strict=True))
