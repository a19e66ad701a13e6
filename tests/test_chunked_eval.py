"""Chunked full-sort evaluation (chunked_eval.py): the same top-k and metrics as RecBole's full score matrix."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from recbole.evaluator import Collector, Evaluator

from recbole_tasrec import run_recbole_tasrec, trainer
from recbole_tasrec.chunked_eval import chunked_full_sort, running_topk, score_blocks
from recbole_tasrec.compat import numpy_aliases
from tests.conftest import small_settings

METRICS = {
    "metrics": ["Recall", "MRR", "NDCG", "Hit", "Precision"],
    "topk": [5, 20],
    "eval_args": {"mode": {"valid": "full", "test": "full"}},
    "device": "cpu",
    "metric_decimal_place": 6,
}


class _Factors:
    """A model whose scores are ``s X^T``, both ways RecBole's trainer and the chunks can ask for them."""

    def __init__(self, session: torch.Tensor, items: torch.Tensor) -> None:
        self.session, self.items = session, items

    def full_sort_factors(self, interaction: object) -> tuple[torch.Tensor, torch.Tensor]:
        return self.session, self.items

    def full_sort_predict(self, interaction: object) -> torch.Tensor:
        return self.session @ self.items.t()


class _Batch:
    def to(self, device: object) -> _Batch:
        return self


def _metrics(scores: torch.Tensor, positive_u: torch.Tensor, positive_i: torch.Tensor) -> dict:
    numpy_aliases()  # RecBole's metrics read numpy 1's np.float, which building a Config defines; none is built here
    collector = Collector(METRICS)
    collector.eval_batch_collect(scores, None, positive_u, positive_i)
    return dict(Evaluator(METRICS).evaluate(collector.get_data_struct()))


def _case(b: int = 9, n: int = 103, d: int = 6):
    g = torch.Generator().manual_seed(0)
    model = _Factors(torch.randn(b, d, generator=g), torch.randn(n, d, generator=g))
    history = (torch.tensor([0, 0, 3, 8]), torch.tensor([5, 77, 1, 102]))
    positive_u = torch.tensor([0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 8, 8])  # some rows with several positives
    positive_i = torch.randint(1, n, (len(positive_u),), generator=g)
    return model, history, positive_u, positive_i


def _full(model: _Factors, history) -> torch.Tensor:
    scores = model.full_sort_predict(None)
    scores[:, 0] = float("-inf")
    scores[history] = float("-inf")
    return scores


@pytest.mark.parametrize("chunk", [1, 7, 20, 103, 500])
def test_running_topk_is_torch_topk_of_the_full_matrix(chunk: int) -> None:
    model, history, _, _ = _case()
    values, items = running_topk(score_blocks(model, None, 103, chunk), 20, history)
    expected_values, expected_items = torch.topk(_full(model, history), 20, dim=1)
    torch.testing.assert_close(values, expected_values)
    assert torch.equal(items, expected_items)


@pytest.mark.parametrize("chunk", [3, 50, 103])
@pytest.mark.parametrize("factors", [True, False])
def test_compressed_scores_give_recboles_metrics(chunk: int, factors: bool) -> None:
    model, history, positive_u, positive_i = _case()
    if not factors:  # a model without full_sort_factors: scored whole, ranked in chunks
        model = _Factors(model.session, model.items)
        model.full_sort_factors = None  # type: ignore[assignment]
    batch = (_Batch(), history, positive_u, positive_i)
    _, compressed, pos_u, pos_col = chunked_full_sort(model, batch, 103, 20, chunk, "cpu")
    assert compressed.shape[1] <= 20 + 3  # at most K + the most positives of a row, never n_items
    assert _metrics(compressed, pos_u, pos_col) == _metrics(_full(model, history), positive_u, positive_i)


def test_a_run_with_chunks_reports_the_same_metrics(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def counted(*args: object):
        calls.append(args[-2])
        return chunked_full_sort(*args)

    monkeypatch.setattr(trainer, "chunked_full_sort", counted)
    results = [
        run_recbole_tasrec(
            "TASRec", "tiny", config_dict=small_settings(data_dir, tmp_path, eval_item_chunk=chunk), saved=False
        )
        for chunk in (0, 7)
    ]
    assert results[0]["test_result"] == results[1]["test_result"]
    assert results[0]["best_valid_result"] == results[1]["best_valid_result"]
    assert calls and set(calls) == {7}  # the second run did go through the chunks
