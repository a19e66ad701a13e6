"""The sampled softmax (model/sampled_softmax.py): Eq. 9 when nothing is sampled, an unbiased normaliser when it
is, popularity draws, and the ``loss_type`` key of TASRec, LESSR and CSRM."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from recbole_tasrec import run_recbole_tasrec
from recbole_tasrec.model.full_softmax import full_softmax_cross_entropy
from recbole_tasrec.model.sampled_softmax import PopularitySampler, negative_sampler, sampled_softmax_cross_entropy
from tests.conftest import small_settings


def _case(n: int = 12, d: int = 5, b: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    session = torch.randn(b, d, generator=g, dtype=torch.float64)
    items = torch.randn(n, d, generator=g, dtype=torch.float64)
    target = torch.randint(1, n, (b,), generator=g)
    return session, items, target


def test_every_item_as_negative_without_correction_is_the_full_cross_entropy() -> None:
    session, items, target = _case()
    s1, i1 = session.clone().requires_grad_(), items.clone().requires_grad_()
    s2, i2 = session.clone().requires_grad_(), items.clone().requires_grad_()
    negatives = torch.arange(items.size(0))  # the padding item 0 and each target are masked inside
    sampled = sampled_softmax_cross_entropy(s1, i1, target, negatives, torch.zeros(items.size(0)))
    full = full_softmax_cross_entropy(s2, i2, target)
    torch.testing.assert_close(sampled, full)
    sampled.backward()
    full.backward()
    torch.testing.assert_close(s1.grad, s2.grad)
    torch.testing.assert_close(i1.grad, i2.grad)


def test_the_log_q_correction_makes_the_normaliser_unbiased() -> None:
    """E[Z_hat] = Z: enumerate every single-negative draw j (probability q_j); K draws average K such terms."""
    session, items, target = _case(seed=1)
    counts = torch.tensor([0, 9, 1, 3, 0, 7, 2, 2, 5, 1, 0, 4])
    sampler = PopularitySampler(counts, num_negatives=1, power=0.5)
    q = sampler.probabilities
    logits = session @ items.t()
    logits[:, 0] = float("-inf")
    target_logit = logits.gather(1, target.unsqueeze(1)).squeeze(1)
    expected = torch.zeros(len(target), dtype=torch.float64)
    for j in range(1, items.size(0)):
        one = torch.tensor([j])
        per_sample = torch.stack(
            [
                sampled_softmax_cross_entropy(
                    session[b : b + 1], items, target[b : b + 1], one, -torch.log(q[one]).double()
                )
                for b in range(len(target))
            ]
        )
        expected += q[j] * torch.exp(per_sample + target_logit)  # Z_hat of this draw, weighted by its probability
    torch.testing.assert_close(expected, torch.logsumexp(logits, 1).exp())
    # and a biased choice (no correction) would not be: the test can fail
    assert not torch.allclose(expected * 1.5, torch.logsumexp(logits, 1).exp())


def test_draws_follow_the_popularity_power_and_never_the_padding_item() -> None:
    counts = torch.tensor([50, 0, 3, 99, 15])
    sampler = PopularitySampler(counts, num_negatives=200_000, power=1.0)
    torch.manual_seed(0)
    negatives, log_weight = sampler.draw()
    assert (negatives != 0).all()
    freq = torch.bincount(negatives, minlength=5).double() / negatives.numel()
    q = torch.tensor([0, 1, 4, 100, 16], dtype=torch.float64) / 121
    torch.testing.assert_close(freq, q, atol=4e-3, rtol=0)
    torch.testing.assert_close(log_weight, -torch.log(200_000 * q[negatives]).float())


def test_sampled_loss_approaches_the_full_loss_as_negatives_grow() -> None:
    session, items, target = _case(n=3000, d=8, b=16, seed=2)
    full = F.cross_entropy((session @ items.t())[:, 1:], target - 1)
    sampler = PopularitySampler(torch.randint(0, 20, (3000,)), num_negatives=20_000)
    torch.manual_seed(3)
    losses = torch.stack([sampler.loss(session, items, target) for _ in range(5)])
    assert abs(losses.mean() - full) < 0.05 * full  # a few thousand negatives: close, but not equal
    small = PopularitySampler(torch.randint(0, 20, (3000,)), num_negatives=4)
    assert small.loss(session, items, target) < full  # few negatives: the log of an estimate is biased low


def test_bad_keys_name_the_key() -> None:
    with pytest.raises(ValueError, match="num_negatives"):
        PopularitySampler(torch.ones(5), num_negatives=0)
    with pytest.raises(ValueError, match="loss_type"):
        negative_sampler({"loss_type": "BPR"}, None, 5, "TASRec")
    with pytest.raises(ValueError, match="num_negatives"):
        negative_sampler({"loss_type": "sampled", "num_negatives": None, "negative_power": 1.0}, None, 5, "TASRec")


@pytest.mark.parametrize("model", ["TASRec", "LESSR", "CSRM"])
def test_models_train_with_the_sampled_loss_and_evaluate(model: str, data_dir: Path, tmp_path: Path) -> None:
    settings = small_settings(data_dir, tmp_path, epochs=1, loss_type="sampled", num_negatives=16)
    result = run_recbole_tasrec(model, "tiny", config_dict=settings, saved=False)
    assert set(result["test_result"]) >= {"recall@20", "mrr@20"}
    assert all(0.0 <= v <= 1.0 for v in result["test_result"].values())
