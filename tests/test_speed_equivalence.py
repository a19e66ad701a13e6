"""The speed-only changes keep the maths: each optimisation against the computation it replaced."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from recbole_tasrec.config import Config
from recbole_tasrec.data import TASRecDataset
from recbole_tasrec.model import TASRec
from recbole_tasrec.model.full_softmax import full_softmax_cross_entropy
from tests.conftest import TinySplit, small_settings


@pytest.fixture(scope="module")
def parts(tiny_split: Callable[..., TinySplit]):
    split = tiny_split()
    torch.manual_seed(0)
    return split.config, split.data.train, split.data.test


def uncut_forward(model: TASRec, seq: torch.Tensor, seq_len: torch.Tensor, day: torch.Tensor) -> torch.Tensor:
    """TASRec.forward before packing: the views on the whole (B, MAX_ITEM_LIST_LENGTH) grid, dropout over the
    whole grid, the masked readout."""
    real = model.real_positions(seq, seq_len)
    z = model.temporal_states(seq, day.unsqueeze(1).expand_as(seq))
    z = z.index_put((real,), z[real] + model.session_states(seq, seq_len))
    z = model.dropout(z)
    return model.readout(z, real, model.gather_indexes(z, seq_len - 1))


def one_day_batch(model: TASRec, part, size: int = 64):
    """A batch of one day's samples, padded to MAX_ITEM_LIST_LENGTH as RecBole pads it."""
    feat = part.inter_feat
    day = feat[part.day_field].long()
    rows = torch.nonzero(day == day[0]).flatten()[:size]
    seq, seq_len = feat[model.ITEM_SEQ][rows], feat[model.ITEM_SEQ_LEN][rows]
    assert int(seq_len.max()) < seq.size(1), "the test needs padding past the longest session to cut"
    return seq, seq_len, day[rows], feat[model.POS_ITEM_ID][rows]


def test_packed_forward_keeps_eval_scores(parts) -> None:
    config, train, test = parts
    model = TASRec(config, train).eval()
    seq, seq_len, day, _ = one_day_batch(model, test)
    with torch.no_grad():
        cut, full = model(seq, seq_len, day), uncut_forward(model, seq, seq_len, day)
    assert torch.allclose(cut, full, atol=1e-6, rtol=1e-5)


def test_packed_forward_keeps_the_loss_and_gradients_without_dropout(data_dir: Path, tmp_path: Path) -> None:
    config = Config("TASRec", "tiny", config_dict=small_settings(data_dir, tmp_path, dropout_prob=0.0))
    train, _, _ = TASRecDataset(config).build()
    torch.manual_seed(0)
    model = TASRec(config, train).train()
    seq, seq_len, day, target = one_day_batch(model, train)
    grads = []
    for forward in (model.forward, lambda *a: uncut_forward(model, *a)):
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(forward(seq, seq_len, day) @ model.item_embedding.weight.t(), target)
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-7, rtol=1e-4)


def test_dropout_is_drawn_at_real_positions_only(parts) -> None:
    """Eq. 5's dropout sees each real position once (the padded ones are masked by the readout anyway)."""
    config, train, _ = parts
    model = TASRec(config, train).train()
    seq, seq_len, day, _ = one_day_batch(model, train)
    seen = []
    handle = model.dropout.register_forward_hook(lambda _m, inputs, output: seen.append((inputs[0], output)))
    try:
        model(seq, seq_len, day)
    finally:
        handle.remove()
    (z, dropped), p = seen[0], model.dropout.p
    assert z.shape == (int(seq_len.sum()), model.embedding_size)
    kept = dropped != 0
    assert torch.allclose(dropped[kept], z[kept] / (1 - p))
    assert 0 < (~kept).float().mean() < 2 * p  # some entries dropped, about a fraction p of them


def test_trainer_gives_tasrec_a_fused_adam_with_the_same_updates(parts) -> None:
    """TASRec's Adam is fused (one pass over all parameters); its updates equal the per-tensor Adam's."""
    from recbole_tasrec.trainer import TASRecTrainer

    config, train, _ = parts
    model = TASRec(config, train).train()
    trainer = TASRecTrainer(config, model)
    assert trainer.optimizer.defaults["fused"] is True
    twin = TASRec(config, train).train()
    twin.load_state_dict(model.state_dict())
    plain = torch.optim.Adam(twin.parameters(), lr=config["learning_rate"], weight_decay=config["weight_decay"] or 0)
    batch = train.inter_feat[torch.arange(64)]
    start = model.item_embedding.weight.detach().clone()
    for step in range(3):
        for net, optimizer in ((model, trainer.optimizer), (twin, plain)):
            torch.manual_seed(step)  # the same dropout masks in both
            optimizer.zero_grad()
            net.calculate_loss(batch).backward()
            optimizer.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(model.item_embedding.weight, start)  # the steps did move the weights


def test_trainer_leaves_other_models_optimiser_as_recbole_ships_it(tiny_split: Callable[..., TinySplit]) -> None:
    from recbole_tasrec.trainer import TASRecTrainer

    split = tiny_split("SRGNN")
    assert not TASRecTrainer(split.config, split.model()).optimizer.defaults["fused"]


def test_evaluation_reuses_a_days_gcn_table_and_drops_it_when_weights_or_graph_change(parts) -> None:
    """Without gradients x comes from a per-day table of every item; scores equal the batch-local GCN's."""
    config, train, test = parts
    model = TASRec(config, train).eval()
    batch = test.inter_feat[torch.arange(128)]

    def scores_both_ways() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            cached = model.full_sort_predict(batch)
        with torch.enable_grad():  # the training path: the GCN on the batch's rows only
            local = model.full_sort_predict(batch).detach()
        return cached, local

    cached, local = scores_both_ways()
    assert model._day_tables, "evaluation should have cached a day's table"
    assert torch.allclose(cached, local, atol=1e-5)
    with torch.no_grad():
        model.temporal_gcn.weight.mul_(1.5)  # as an optimiser step does, in place
    model.train().eval()  # as training does around its steps: the tables are dropped
    assert not model._day_tables
    moved, local = scores_both_ways()
    assert not torch.allclose(moved, cached, atol=1e-5)
    assert torch.allclose(moved, local, atol=1e-5)
    with torch.no_grad():
        model.item_embedding.weight.mul_(0.5)  # by hand: the caller says so
    model.invalidate_day_tables()
    edited, local = scores_both_ways()
    assert not torch.allclose(edited, moved, atol=1e-5) and torch.allclose(edited, local, atol=1e-5)


@pytest.mark.parametrize("masked", [0, 3])
def test_full_softmax_cross_entropy_equals_the_torch_composition(masked: int) -> None:
    """The one-buffer Eq. 8-9 against ``s @ X.T``, the masked column at ``-inf`` and ``cross_entropy``:
    the loss and both gradients, at a large score range (the max subtraction must hold)."""
    gen = torch.Generator().manual_seed(0)
    session = (8 * torch.randn(16, 6, generator=gen, dtype=torch.float64)).requires_grad_()
    items = torch.randn(40, 6, generator=gen, dtype=torch.float64).requires_grad_()
    target = torch.randint(0, 40, (16,), generator=gen)
    target[target == masked] = masked + 1
    weights = []
    for compute in (
        lambda: full_softmax_cross_entropy(session, items, target, masked_item=masked),
        lambda: torch.nn.functional.cross_entropy(
            (session @ items.t()).index_fill(1, torch.tensor([masked]), float("-inf")), target
        ),
    ):
        loss = 2.5 * compute()  # a non-unit upstream gradient
        weights.append((loss.detach(), *torch.autograd.grad(loss, (session, items))))
    for ours, reference in zip(*weights, strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)


def test_full_softmax_cross_entropy_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="target must be"):
        full_softmax_cross_entropy(torch.zeros(4, 3), torch.zeros(9, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="session"):
        full_softmax_cross_entropy(torch.zeros(4, 3), torch.zeros(9, 2), torch.zeros(4, dtype=torch.long))


def test_sparse_lookup_gradients_end_dense_and_equal(parts) -> None:
    """The session lookup and the GCN's x^0 gather give sparse gradients; the table's .grad is the dense
    sum, equal to the one with dense lookups."""
    config, train, _ = parts
    model = TASRec(config, train).train()
    seq, seq_len, day, target = one_day_batch(model, train)
    interaction = {model.ITEM_SEQ: seq, model.ITEM_SEQ_LEN: seq_len, "day": day, model.POS_ITEM_ID: target}
    grads = []
    for sparse in (True, False):
        model.temporal_gcn.sparse_grad = sparse
        if not sparse:
            model._lookup = model.item_embedding  # a dense-gradient lookup of the same rows
        model.zero_grad()
        torch.manual_seed(3)
        model.calculate_loss(interaction).backward()
        assert model.item_embedding.weight.grad.layout == torch.strided
        grads.append(model.item_embedding.weight.grad.clone())
    assert model.temporal_gcn.last_mode == "local"
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)
