"""LESSR: its two graphs against hand-worked sessions, its layers against their equations, padding, learning,
checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from recbole.data.interaction import Interaction

from recbole_tasrec.model.lessr import LESSR
from recbole_tasrec.model.lessr_graphs import build_lessr_graphs
from recbole_tasrec.model.lessr_layers import EOPA, SGAT
from tests.conftest import TinySplit, assert_learns_demo_set_and_checkpoint_rescores

#: three sessions, right-padded; what lies after each length (here 8s) must be ignored
SESSIONS = torch.tensor([[5, 7, 5, 9, 7, 8], [5, 7, 5, 7, 8, 8], [3, 8, 8, 8, 8, 8]])
LENGTHS = torch.tensor([5, 4, 1])


def test_eop_multigraph_keeps_every_edge_in_order_of_occurrence() -> None:
    # session 0: nodes 5->0, 7->1, 9->2; edges in order 0->1, 1->0, 0->2, 2->1
    # session 1: nodes 5->0, 7->1; edges 0->1, 1->0, 0->1 (the repeated edge stays a second edge)
    # session 2: one node, no edge
    g = build_lessr_graphs(SESSIONS, LENGTHS)
    assert g.nodes.tolist() == [[5, 7, 9], [5, 7, 0], [3, 0, 0]]
    assert g.node_mask.tolist() == [[True, True, True], [True, True, False], [True, False, False]]
    assert g.last.tolist() == [1, 1, 0]
    assert g.in_degree.tolist() == [[1, 2, 1], [1, 2, 0], [0, 0, 0]]
    lists = [[g.in_messages[b, v, : g.in_degree[b, v]].tolist() for v in range(3)] for b in range(3)]
    assert lists == [[[1], [0, 2], [0]], [[1], [0, 0], []], [[], [], []]]


def test_shortcut_graph_links_each_item_to_itself_and_everything_after_it() -> None:
    g = build_lessr_graphs(SESSIONS, LENGTHS)
    # session 0 (nodes 0 1 0 2 1): only 9 (node 2) is never followed by 5 (node 0)
    assert g.shortcut[0].long().tolist() == [[1, 1, 1], [1, 1, 1], [0, 1, 1]]
    assert g.shortcut[1].long().tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 0]]
    assert g.shortcut[2].long().tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0]]


def test_graphs_of_length_one_sessions_only() -> None:
    g = build_lessr_graphs(torch.tensor([[4, 0], [6, 0]]), torch.tensor([1, 1]))
    assert g.in_messages.shape == (2, 1, 0) and g.in_degree.tolist() == [[0], [0]]
    assert g.shortcut.tolist() == [[[True]], [[True]]]


def test_bad_lengths_are_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="session lengths"):
        build_lessr_graphs(torch.tensor([[1, 2]]), torch.tensor([0]))


def test_eopa_is_a_gru_over_the_in_neighbours_in_edge_order() -> None:
    torch.manual_seed(0)
    layer = EOPA(4, 3).eval()  # eval: batch norm with its initial statistics, i.e. x / sqrt(1 + eps)
    feat = torch.randn(1, 3, 4)
    mask = torch.ones(1, 3, dtype=torch.bool)
    degree = torch.tensor([[2, 0, 0]])
    with torch.no_grad():
        out = layer(feat, mask, torch.tensor([[[1, 2], [0, 0], [0, 0]]]), degree)
        swapped = layer(feat, mask, torch.tensor([[[2, 1], [0, 0], [0, 0]]]), degree)
        x = feat[0] / (1 + layer.batch_norm.eps) ** 0.5
        _, h = layer.gru(x[[1, 2]].unsqueeze(0))
        expected0 = layer.activation((layer.fc_self(x[0]) + layer.fc_neigh(h[0, 0])).unsqueeze(0))[0]
        expected1 = layer.activation(layer.fc_self(x[1]).unsqueeze(0))[0]  # no in-edge: the neighbour state is 0
    torch.testing.assert_close(out[0, 0], expected0)
    torch.testing.assert_close(out[0, 1], expected1)
    assert not torch.allclose(out[0, 0], swapped[0, 0])  # the order of the messages matters
    torch.testing.assert_close(out[0, 1:], swapped[0, 1:])


def test_sgat_attends_over_the_in_edges_of_the_shortcut_graph() -> None:
    torch.manual_seed(0)
    layer = SGAT(4, 5, 3).eval()
    feat = torch.randn(1, 3, 4)
    mask = torch.tensor([[True, True, False]])
    shortcut = torch.tensor([[[True, True, False], [False, True, False], [False, False, False]]])
    with torch.no_grad():
        out = layer(feat, mask, shortcut)
        x = feat[0] / (1 + layer.batch_norm.eps) ** 0.5
        for v, sources in [(0, [0]), (1, [0, 1])]:
            e = torch.stack([layer.fc_e(torch.sigmoid(layer.fc_q(x[u]) + layer.fc_k(x[v])))[0] for u in sources])
            alpha = torch.softmax(e, 0)
            expected = sum(a * layer.fc_v(x[u]) for a, u in zip(alpha, sources, strict=True))
            expected = layer.activation(expected.unsqueeze(0))[0]
            torch.testing.assert_close(out[0, v], expected)
    assert out[0, 2].abs().sum() == 0  # padding stays zero


@pytest.fixture(scope="module")
def setup(tiny_split: Callable[..., TinySplit]):
    split = tiny_split("LESSR")
    torch.manual_seed(0)
    return LESSR(split.config, split.data.train).eval(), split.data.valid


def test_padding_and_batch_mates_never_change_a_sessions_scores(setup) -> None:
    model, valid = setup
    lengths = valid.inter_feat[model.ITEM_SEQ_LEN]
    rows = torch.cat([torch.nonzero(lengths == 1).flatten()[:3], torch.nonzero(lengths > 3).flatten()[:5]])
    batch = valid.inter_feat[rows]
    seq, seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    garbage = torch.randint(1, model.n_items, (len(rows), seq.size(1) + 4))
    positions = torch.arange(garbage.size(1)).unsqueeze(0)
    wide = torch.where(positions < seq_len.unsqueeze(1), torch.nn.functional.pad(seq, (0, 4)), garbage)
    with torch.no_grad():
        scores = model.full_sort_predict(batch)
        padded = model.full_sort_predict(Interaction({model.ITEM_SEQ: wide, model.ITEM_SEQ_LEN: seq_len}))
        alone = torch.cat([model.full_sort_predict(valid.inter_feat[rows[i : i + 1]]) for i in range(len(rows))])
    assert scores.shape == (len(rows), model.n_items) and torch.isfinite(scores).all()
    torch.testing.assert_close(padded, scores)
    torch.testing.assert_close(alone, scores, rtol=1e-4, atol=1e-5)


def test_training_step_on_length_one_and_single_row_batches(setup) -> None:
    model, valid = setup
    model.train()
    try:
        lengths = valid.inter_feat[model.ITEM_SEQ_LEN]
        for rows in [torch.nonzero(lengths == 1).flatten()[:4], torch.tensor([0])]:
            loss = model.calculate_loss(valid.inter_feat[rows])
            loss.backward()
            assert torch.isfinite(loss)
            assert torch.isfinite(model.item_embedding.weight.grad).all()
            model.zero_grad()
    finally:
        model.eval()


def test_item_embeddings_are_renormalised_to_the_max_norm(setup) -> None:
    model, _ = setup
    norms = model.item_vectors().norm(dim=1)
    assert norms.max() <= 1.0 + 1e-5 and norms[1:].min() > 0


@pytest.mark.slow
def test_lessr_learns_the_demo_set_and_a_checkpoint_gives_the_same_scores(tmp_path: Path) -> None:
    # measured (these settings, seeds 1 2 3): test Recall@20 0.159 0.175 0.169 (spread 0.016), most popular 0.102;
    # the margin (0.133) lies below the lowest seed less the spread. The paper's lr 1e-3 needs more epochs here.
    settings = {
        "run_dir": str(tmp_path),
        "show_progress": False,
        "state": "WARNING",
        "epochs": 2,
        "embedding_size": 32,
        "train_batch_size": 128,
        "learning_rate": 0.005,
        "seed": 1,
    }
    assert_learns_demo_set_and_checkpoint_rescores("LESSR", settings, factor=1.3)
