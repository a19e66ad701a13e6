"""``lazy_adam`` (recbole_tasrec/lazy_adam.py): Adam's update on dense gradients and on the rows of sparse ones,
untouched rows left alone; TASRec's sampled loss gives the item table a sparse gradient only when asked."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import torch

from recbole_tasrec import run_recbole_tasrec
from recbole_tasrec.lazy_adam import LazyAdam
from recbole_tasrec.model.sampled_softmax import PopularitySampler
from recbole_tasrec.trainer import ScheduledTrainer
from tests.conftest import small_settings


def _pair(seed: int, rows: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    weight = torch.randn(rows, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return weight.clone().requires_grad_(), weight.clone().requires_grad_()


def _grad(step: int, rows: int = 30) -> torch.Tensor:
    return torch.randn(rows, 4, generator=torch.Generator().manual_seed(100 + step), dtype=torch.float64)


def test_dense_gradients_get_torch_adam() -> None:
    lazy, reference = _pair(0)
    ours = LazyAdam([lazy], lr=0.01, weight_decay=0.1)
    theirs = torch.optim.Adam([reference], lr=0.01, weight_decay=0.1)
    for step in range(6):
        lazy.grad, reference.grad = _grad(step), _grad(step)
        ours.step()
        theirs.step()
    torch.testing.assert_close(lazy, reference)


def test_sparse_gradients_update_their_rows_as_adam_and_leave_the_rest() -> None:
    lazy, reference = _pair(1)
    touched = torch.tensor([2, 5, 11, 29])
    ours = LazyAdam([lazy], lr=0.01, weight_decay=0.1)
    rows_only = reference[touched].detach().clone().requires_grad_()  # Adam on the touched rows alone
    theirs = torch.optim.Adam([rows_only], lr=0.01, weight_decay=0.1)
    for step in range(6):
        values = _grad(step)[touched]
        # the same rows in two halves (uncoalesced, one row twice): LazyAdam sums them as autograd would
        with torch.sparse.check_sparse_tensor_invariants():
            lazy.grad = torch.sparse_coo_tensor(
                touched.repeat(2).unsqueeze(0), torch.cat([values / 2, values / 2]), (30, 4)
            )
        rows_only.grad = values
        ours.step()
        theirs.step()
    torch.testing.assert_close(lazy[touched], rows_only)
    untouched = torch.ones(30, dtype=torch.bool)
    untouched[touched] = False
    torch.testing.assert_close(lazy[untouched], reference[untouched])
    assert bool((ours.state[lazy]["exp_avg"][untouched] == 0).all())


def test_the_sampled_loss_gives_a_sparse_gradient_only_when_asked() -> None:
    counts = torch.tensor([0, 5, 3, 1, 0, 2, 8, 1])
    sampler = PopularitySampler(counts, num_negatives=3)
    session = torch.randn(2, 4)
    target = torch.tensor([1, 6])
    for sparse in (False, True):
        table = torch.randn(8, 4, generator=torch.Generator().manual_seed(2)).requires_grad_()
        torch.manual_seed(0)
        sampler.loss(session, table, target, sparse=sparse).backward()
        assert table.grad.is_sparse == sparse
        if sparse:
            sparse_grad = table.grad.to_dense()
        else:
            dense_grad = table.grad
    torch.testing.assert_close(sparse_grad, dense_grad)


def test_tasrec_trains_with_lazy_adam_and_evaluates(data_dir: Path, tmp_path: Path) -> None:
    settings = small_settings(
        data_dir, tmp_path, epochs=1, loss_type="sampled", num_negatives=16, lazy_adam=True, max_neighbors=2
    )
    result = run_recbole_tasrec("TASRec", "tiny", config_dict=settings, saved=False)
    assert all(0.0 <= v <= 1.0 for v in result["test_result"].values())
    assert all(math.isfinite(loss) for loss in result["train_loss"])


def test_the_trainer_builds_lazy_adam_only_when_asked() -> None:
    model = SimpleNamespace(parameters=lambda: [torch.nn.Parameter(torch.zeros(2))], fused_adam=True)
    trainer = SimpleNamespace(model=model, learner="adam", learning_rate=0.01, weight_decay=0.0)
    assert not isinstance(ScheduledTrainer._build_optimizer(trainer), LazyAdam)
    model.lazy_adam = True
    assert isinstance(ScheduledTrainer._build_optimizer(trainer), LazyAdam)
