"""``max_neighbors`` (model/temporal_gcn.py): training's temporal GCN samples neighbours without bias, keeps the
paper's every-neighbour GCN when unset or large enough, and never samples at evaluation."""

from __future__ import annotations

import warnings

import pytest
import torch

from recbole_tasrec.model.sparse import csr_row_block
from recbole_tasrec.model.temporal_gcn import TemporalGCN, sample_neighbors


def _propagation(n: int, density: float, seed: int) -> torch.Tensor:
    """A row-normalised ``P`` with self loops, as Eq. 2, on a random symmetric graph (CSR, float64)."""
    g = torch.Generator().manual_seed(seed)
    e = (torch.rand(n, n, generator=g, dtype=torch.float64) < density).triu(1) * (1 + torch.rand(n, n, generator=g))
    e = e + e.T
    p = (e + torch.eye(n, dtype=torch.float64)) / (e.sum(1, keepdim=True) + 1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return p.to_sparse_csr()


def _block(p: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return csr_row_block(p, rows)


def test_rows_within_the_limit_are_unchanged() -> None:
    crow, col, values = _block(_propagation(60, 0.1, 0), torch.arange(60))
    most = int((crow[1:] - crow[:-1]).max())
    assert all(
        torch.equal(a, b) for a, b in zip(sample_neighbors(crow, col, values, most), (crow, col, values), strict=True)
    )


def test_each_long_row_keeps_most_of_its_own_entries_scaled_up() -> None:
    crow, col, values = _block(_propagation(80, 0.3, 1), torch.arange(80))
    torch.manual_seed(0)
    kept_crow, kept_col, kept_values = sample_neighbors(crow, col, values, 5)
    counts, kept = crow[1:] - crow[:-1], kept_crow[1:] - kept_crow[:-1]
    assert torch.equal(kept, counts.clamp(max=5)) and bool((counts > 5).any())
    for row in range(80):
        full = dict(
            zip(col[crow[row] : crow[row + 1]].tolist(), values[crow[row] : crow[row + 1]].tolist(), strict=True)
        )
        part = zip(
            kept_col[kept_crow[row] : kept_crow[row + 1]].tolist(),
            kept_values[kept_crow[row] : kept_crow[row + 1]],
            strict=True,
        )
        for column, value in part:
            assert value.item() == pytest.approx(full[column] * max(1.0, counts[row].item() / 5))


def test_the_sampled_aggregation_is_unbiased() -> None:
    """The mean of 4,000 sampled ``P x`` is within 5 standard errors of the exact one, row by row."""
    p = _propagation(40, 0.5, 2)
    crow, col, values = _block(p, torch.arange(40))
    x = torch.randn(40, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    exact = p @ x
    torch.manual_seed(1)
    draws = []
    for _ in range(4000):
        kept_crow, kept_col, kept_values = sample_neighbors(crow, col, values, 4)
        row = torch.repeat_interleave(torch.arange(40), kept_crow[1:] - kept_crow[:-1])
        draws.append(torch.zeros(40, 3, dtype=torch.float64).index_add_(0, row, kept_values[:, None] * x[kept_col]))
    draws = torch.stack(draws)
    error = (draws.mean(0) - exact).abs()
    assert bool((error <= 5 * draws.std(0) / 4000**0.5 + 1e-12).all())
    assert float(draws.std(0).max()) > 0.01  # it did sample


def test_the_gcn_samples_only_in_training_and_only_when_asked() -> None:
    p = _propagation(50, 0.3, 4).to(torch.float32)
    weight = torch.randn(50, 8, generator=torch.Generator().manual_seed(5))
    items = torch.tensor([[1, 2, 3], [4, 5, 0]])
    torch.manual_seed(0)
    exact = TemporalGCN(8, 2, mode="local")
    sampled = TemporalGCN(8, 2, mode="local", max_neighbors=2)
    wide = TemporalGCN(8, 2, mode="local", max_neighbors=50)
    sampled.load_state_dict(exact.state_dict())
    wide.load_state_dict(exact.state_dict())
    expected = exact(weight, p, items)
    torch.testing.assert_close(wide(weight, p, items), expected)  # no row has more than 50 entries
    assert not torch.allclose(sampled(weight, p, items), expected)
    sampled.eval()
    torch.testing.assert_close(sampled(weight, p, items), expected)
    with pytest.raises(ValueError, match="max_neighbors"):
        TemporalGCN(8, 2, max_neighbors=0)
