"""Tests of the TASRec layers (session_graph, temporal_gcn, sparse, readout), each alone, against references.

RecBole is imported here (never in the module itself) as the reference for SR-GNN's parts.
"""

from __future__ import annotations

import copy
import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recbole_tasrec.model.readout import AttentionReadout
from recbole_tasrec.model.session_graph import SessionGGNN, build_session_graphs, gather_positions
from recbole_tasrec.model.sparse import csr_row_block
from recbole_tasrec.model.temporal_gcn import TemporalGCN, l2_normalize

srgnn = pytest.importorskip("recbole.model.sequential_recommender.srgnn")
# Importing RecBole's sequential models runs recbole/model/sequential_recommender/sine.py:25,
# ``torch.autograd.set_detect_anomaly(True)``, for the whole process (every op then records a
# stack trace). Switch it back off; recbole_tasrec.compat should do the same.
torch.autograd.set_detect_anomaly(False)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def reference_slice(item_seq: np.ndarray, edge_weight: str):
    """RecBole's ``SRGNN._get_slice`` loop, copied, with a ``count`` option (``+= 1``)."""
    alias_inputs, big_a, items = [], [], []
    max_n_node = item_seq.shape[1]
    for u_input in item_seq:
        node = np.unique(u_input)
        items.append(node.tolist() + (max_n_node - len(node)) * [0])
        u_a = np.zeros((max_n_node, max_n_node))
        for i in np.arange(len(u_input) - 1):
            if u_input[i + 1] == 0:
                break
            u = np.where(node == u_input[i])[0][0]
            v = np.where(node == u_input[i + 1])[0][0]
            if edge_weight == "count":
                u_a[u][v] += 1
            else:
                u_a[u][v] = 1
        u_sum_in = np.sum(u_a, 0)
        u_sum_in[np.where(u_sum_in == 0)] = 1
        u_a_in = np.divide(u_a, u_sum_in)
        u_sum_out = np.sum(u_a, 1)
        u_sum_out[np.where(u_sum_out == 0)] = 1
        u_a_out = np.divide(u_a.transpose(), u_sum_out)
        big_a.append(np.concatenate([u_a_in, u_a_out]).transpose())
        alias_inputs.append([np.where(node == i)[0][0] for i in u_input])
    return np.array(alias_inputs), np.array(big_a), np.array(items)


def random_batch(gen: torch.Generator, batch: int, length: int, vocab: int):
    """Right-padded sessions with repeats (small vocabulary) and length-1 sessions."""
    lengths = torch.randint(1, length + 1, (batch,), generator=gen)
    lengths[0] = 1
    lengths[-1] = length
    seq = torch.randint(1, vocab + 1, (batch, length), generator=gen)
    seq[torch.arange(length).unsqueeze(0) >= lengths.unsqueeze(1)] = 0
    return seq, lengths


def assert_close(got: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-7) -> None:
    """Like ``torch.testing.assert_close`` (whose first call imports torch.distributed: ~4 s)."""
    assert got.shape == expected.shape, (got.shape, expected.shape)
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    diff = (got - expected).abs().max().item() if got.numel() else 0.0
    assert torch.allclose(got, expected, rtol=rtol, atol=atol), f"max abs difference {diff}"


def close(got: torch.Tensor, expected: list) -> None:
    """``got`` equals the hand-written numbers (to float32 or float64 rounding)."""
    atol = 1e-12 if got.dtype == torch.float64 else 1e-6
    assert_close(got.detach().double(), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=atol)


def assert_matches_reference(seq: torch.Tensor, lengths: torch.Tensor, edge_weight: str) -> None:
    graphs = build_session_graphs(seq, lengths, edge_weight, dtype=torch.float64)
    ref_alias, ref_a, _ = reference_slice(seq.numpy(), edge_weight)
    length = seq.size(1)
    n_max = graphs.nodes.size(1)
    assert n_max == max(len(np.unique(s[: int(n)])) for s, n in zip(seq.numpy(), lengths, strict=True))
    for b in range(seq.size(0)):
        node = np.unique(seq[b].numpy())
        keep = np.nonzero(node != 0)[0]  # RecBole makes padding item 0 a node; we do not
        n = len(keep)
        assert graphs.nodes[b, :n].tolist() == node[keep].tolist()
        assert graphs.nodes[b, n:].eq(0).all()
        assert graphs.node_mask[b].tolist() == [True] * n + [False] * (n_max - n)
        a_in_ref = ref_a[b][:, :length][np.ix_(keep, keep)]
        a_out_ref = ref_a[b][:, length:][np.ix_(keep, keep)]
        np.testing.assert_allclose(graphs.a_in[b, :n, :n].numpy(), a_in_ref, rtol=0, atol=1e-12)
        np.testing.assert_allclose(graphs.a_out[b, :n, :n].numpy(), a_out_ref, rtol=0, atol=1e-12)
        assert graphs.a_in[b, n:].eq(0).all() and graphs.a_in[b, :, n:].eq(0).all()
        assert graphs.a_out[b, n:].eq(0).all() and graphs.a_out[b, :, n:].eq(0).all()
        real = int(lengths[b])
        alias = graphs.alias[b, :real]
        assert keep[alias.numpy()].tolist() == ref_alias[b, :real].tolist()
        assert graphs.nodes[b, alias].tolist() == seq[b, :real].tolist()
        assert graphs.alias[b, real:].eq(0).all()


# --------------------------------------------------------------------------------------------
# build_session_graphs
# --------------------------------------------------------------------------------------------
def test_reference_copy_equals_recbole_get_slice() -> None:
    """The numpy copy used below is RecBole's own loop (binary), so comparing to it is fair."""
    gen = torch.Generator().manual_seed(0)
    seq, _ = random_batch(gen, 16, 7, 4)
    alias, big_a, items, _ = srgnn.SRGNN._get_slice(SimpleNamespace(device="cpu"), seq)
    ref_alias, ref_a, ref_items = reference_slice(seq.numpy(), "binary")
    assert alias.tolist() == ref_alias.tolist()
    assert items.tolist() == ref_items.tolist()
    np.testing.assert_allclose(big_a.numpy(), ref_a, atol=1e-6)


@pytest.mark.parametrize("edge_weight", ["count", "binary"])
def test_session_graphs_match_srgnn_loop_on_random_batches(edge_weight: str) -> None:
    gen = torch.Generator().manual_seed(1)
    for batch, length, vocab in [(1, 1, 3), (8, 5, 2), (32, 10, 6), (64, 20, 30), (5, 12, 1)]:
        seq, lengths = random_batch(gen, batch, length, vocab)
        assert_matches_reference(seq, lengths, edge_weight)


@settings(max_examples=60, deadline=None)
@given(
    sessions=st.lists(st.lists(st.integers(1, 5), min_size=1, max_size=8), min_size=1, max_size=6),
    edge_weight=st.sampled_from(["count", "binary"]),
)
def test_session_graphs_property(sessions: list[list[int]], edge_weight: str) -> None:
    length = max(len(s) for s in sessions)
    seq = torch.tensor([s + [0] * (length - len(s)) for s in sessions])
    lengths = torch.tensor([len(s) for s in sessions])
    assert_matches_reference(seq, lengths, edge_weight)


def test_session_graph_hand_example_count_vs_binary() -> None:
    # session 7, 4, 7, 4, 7, 9: edges 7->4 (x2), 4->7 (x2), 7->9 (x1); nodes sorted: 4, 7, 9
    seq = torch.tensor([[7, 4, 7, 4, 7, 9], [3, 0, 0, 0, 0, 0]])
    lengths = torch.tensor([6, 1])
    count = build_session_graphs(seq, lengths, "count", dtype=torch.float64)
    binary = build_session_graphs(seq, lengths, "binary", dtype=torch.float64)
    assert count.nodes.tolist() == [[4, 7, 9], [3, 0, 0]]
    assert count.alias.tolist() == [[1, 0, 1, 0, 1, 2], [0, 0, 0, 0, 0, 0]]
    assert count.node_mask.tolist() == [[True, True, True], [True, False, False]]
    # out-going from 7: to 4 twice, to 9 once
    close(count.a_out[0], [[0, 1, 0], [2 / 3, 0, 1 / 3], [0, 0, 0]])
    close(binary.a_out[0], [[0, 1, 0], [1 / 2, 0, 1 / 2], [0, 0, 0]])
    # in-coming: a_in[v, u]; 4 <- 7 only, 7 <- 4 only, 9 <- 7
    close(count.a_in[0], [[0, 1, 0], [1, 0, 0], [0, 1, 0]])
    # a length-1 session has no edge at all
    assert count.a_in[1].abs().sum() == 0 and count.a_out[1].abs().sum() == 0


def test_session_graph_self_loop_and_ignores_values_past_length() -> None:
    seq = torch.tensor([[5, 5, 2, 0]])
    garbage = torch.tensor([[5, 5, 2, 8]])  # position 3 is padding by length, whatever it holds
    lengths = torch.tensor([3])
    a = build_session_graphs(seq, lengths)
    b = build_session_graphs(garbage, lengths)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    # nodes 2, 5; 5->5 (self loop), 5->2
    assert a.a_out[0].tolist() == [[0, 0], [0.5, 0.5]]
    assert a.a_in[0].tolist() == [[0, 1], [0, 1]]


def test_session_graph_rejects_unknown_weight() -> None:
    with pytest.raises(ValueError):
        build_session_graphs(torch.ones(1, 2, dtype=torch.long), torch.tensor([2]), "weighted")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# SessionGGNN
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("step", [1, 3])
def test_session_ggnn_equals_recbole_gnn(step: int) -> None:
    torch.manual_seed(2)
    d = 6
    ours = SessionGGNN(d, step).double()
    ref = srgnn.GNN(d, step).double()
    ref.load_state_dict(ours.state_dict())
    gen = torch.Generator().manual_seed(3)
    seq, lengths = random_batch(gen, 12, 7, 4)
    graphs = build_session_graphs(seq, lengths, "binary", dtype=torch.float64)
    hidden = torch.randn(*graphs.nodes.shape, d, dtype=torch.float64)
    expected = ref(torch.cat([graphs.a_in, graphs.a_out], dim=2), hidden)
    assert_close(ours(graphs.a_in, graphs.a_out, hidden), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("step", [1, 2])
def test_session_ggnn_on_real_nodes_only_equals_every_node(step: int) -> None:
    """``node_mask`` (gates on real nodes only) gives the same values and gradients at real nodes, zeros at
    padding nodes; the padding nodes' inputs get no gradient."""
    torch.manual_seed(6)
    d = 5
    gnn = SessionGGNN(d, step).double()
    seq, lengths = random_batch(torch.Generator().manual_seed(7), 16, 9, 6)
    graphs = build_session_graphs(seq, lengths, dtype=torch.float64)
    assert not graphs.node_mask.all()  # the batch has padding nodes to skip
    hidden = torch.randn(*graphs.nodes.shape, d, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(*graphs.nodes.shape, d, dtype=torch.float64) * graphs.node_mask.unsqueeze(-1)

    dense = gnn(graphs.a_in, graphs.a_out, hidden)
    (dense_grad,) = torch.autograd.grad((dense * weights).sum(), hidden)
    packed = gnn(graphs.a_in, graphs.a_out, hidden, graphs.node_mask)
    (packed_grad,) = torch.autograd.grad((packed * weights).sum(), hidden)

    real = graphs.node_mask
    assert_close(packed[real], dense[real], rtol=1e-12, atol=1e-12)
    assert (packed[~real] == 0).all()
    assert_close(packed_grad, dense_grad, rtol=1e-12, atol=1e-12)
    assert (packed_grad[~real] == 0).all()


def test_session_ggnn_pipeline_equals_recbole_srgnn_at_real_positions() -> None:
    """Embed -> graph -> GGNN -> positions, ours vs RecBole's ``_get_slice`` + ``GNN`` (binary)."""
    torch.manual_seed(4)
    d, vocab = 5, 6
    emb = torch.randn(vocab + 1, d, dtype=torch.float64)
    emb[0] = 0
    ours = SessionGGNN(d, 2).double()
    ref = srgnn.GNN(d, 2).double()
    ref.load_state_dict(ours.state_dict())
    seq, lengths = random_batch(torch.Generator().manual_seed(5), 20, 8, vocab)

    alias_r, a_r, items_r, _ = srgnn.SRGNN._get_slice(SimpleNamespace(device="cpu"), seq)
    seq_ref = gather_positions(ref(a_r.double(), emb[items_r]), alias_r)
    graphs = build_session_graphs(seq, lengths, "binary", dtype=torch.float64)
    seq_ours = gather_positions(ours(graphs.a_in, graphs.a_out, emb[graphs.nodes]), graphs.alias)
    real = torch.arange(seq.size(1)).unsqueeze(0) < lengths.unsqueeze(1)
    # RecBole builds A in float32 (1/3 is rounded there), hence the tolerance
    assert_close(seq_ours[real], seq_ref[real], rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------------------------
# TemporalGCN
# --------------------------------------------------------------------------------------------
def to_csr(dense: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return dense.to_sparse_csr()


def propagation_from_edges(e: torch.Tensor) -> torch.Tensor:
    """Dense ``P = (E + I) / (rowsum(E) + 1)`` (Eq. 2's normalisation with the self loop)."""
    n = e.size(0)
    return (e + torch.eye(n, dtype=e.dtype)) / (e.sum(1, keepdim=True) + 1)


def random_edges(gen: torch.Generator, n: int, density: float) -> torch.Tensor:
    """Symmetric decayed-looking weights in [1, 2), zero diagonal, some isolated items."""
    upper = (torch.rand(n, n, generator=gen, dtype=torch.float64) < density).triu(1)
    weights = 1 + torch.rand(n, n, generator=gen, dtype=torch.float64)
    e = upper * weights
    e = e + e.T
    e[: max(1, n // 10)] = 0
    e[:, : max(1, n // 10)] = 0
    return e


def dense_reference(x0: torch.Tensor, p: torch.Tensor, w: torch.Tensor, k: int, slope: float) -> torch.Tensor:
    h, total = x0, x0
    for _ in range(k):
        h = torch.nn.functional.leaky_relu(p @ h @ w, slope)
        total = total + h
    return total / (k + 1)


def test_temporal_gcn_hand_example() -> None:
    # items 0..3; e_12 = e_21 = 1, e_13 = e_31 = 2; item 0 has no neighbours.
    # P rows: 0: [1,0,0,0]; 1: [0,1/4,1/4,2/4]; 2: [0,1/2,1/2,0]; 3: [0,2/3,0,1/3]
    e = torch.zeros(4, 4, dtype=torch.float64)
    e[1, 2] = e[2, 1] = 1
    e[1, 3] = e[3, 1] = 2
    p_dense = propagation_from_edges(e)
    expected_p = [[1, 0, 0, 0], [0, 0.25, 0.25, 0.5], [0, 0.5, 0.5, 0], [0, 2 / 3, 0, 1 / 3]]
    close(p_dense, expected_p)
    x0 = torch.tensor([[1.0, 1.0], [3.0, 0.0], [1.0, 2.0], [0.0, 6.0]], dtype=torch.float64)
    w1 = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)  # flips the 2nd coordinate
    # (P x0) rows: [1, 1], [1, 3.5], [2, 1], [2, 2]; times W1: [1, -1], [1, -3.5], [2, -1], [2, -2]
    # LeakyReLU(0.2): x^1 = [1, -0.2], [1, -0.7], [2, -0.2], [2, -0.4]
    x1 = [[1.0, -0.2], [1.0, -0.7], [2.0, -0.2], [2.0, -0.4]]
    # K = 1: x = (x^0 + x^1) / 2
    mean = [[1.0, 0.4], [2.0, -0.35], [1.5, 0.9], [1.0, 2.8]]

    gcn = TemporalGCN(2, n_layers=1, negative_slope=0.2).double()
    with torch.no_grad():
        gcn.weight.copy_(w1)
    p = to_csr(p_dense)
    items = torch.tensor([[1, 3], [2, 0]])
    for mode in ("local", "full", "auto"):
        out = gcn(x0, p, items, mode=mode)
        assert out.shape == (2, 2, 2)
        close(out.reshape(4, 2), [mean[1], mean[3], mean[2], mean[0]])
        close(gcn.full_table(x0, p), mean)
    # one layer by itself (the mean recovers it): 2 * x - x^0 = x^1
    close((2 * gcn.full_table(x0, p) - x0), x1)


def test_temporal_gcn_isolated_item_gets_leaky_relu_of_x_w1() -> None:
    torch.manual_seed(6)
    d = 4
    e = torch.zeros(5, 5, dtype=torch.float64)
    e[2, 3] = e[3, 2] = 1.0
    p = to_csr(propagation_from_edges(e))
    x0 = torch.randn(5, d, dtype=torch.float64)
    gcn = TemporalGCN(d, n_layers=2, negative_slope=0.1).double()
    w = gcn.weight.detach()
    layer1 = torch.nn.functional.leaky_relu(x0[1] @ w, 0.1)
    layer2 = torch.nn.functional.leaky_relu(layer1 @ w, 0.1)
    expected = (x0[1] + layer1 + layer2) / 3
    for mode in ("local", "full"):
        assert_close(gcn(x0, p, torch.tensor([1]), mode=mode)[0].detach(), expected)


@pytest.mark.parametrize("n_layers", [0, 1, 2, 3])
def test_temporal_gcn_local_full_dense_agree_values_and_gradients(n_layers: int) -> None:
    gen = torch.Generator().manual_seed(10 + n_layers)
    for n, density, d in [(30, 0.1, 5), (60, 0.03, 7), (12, 0.6, 3)]:
        e = random_edges(gen, n, density)
        p_dense = propagation_from_edges(e)
        p = to_csr(p_dense)
        x0 = torch.randn(n, d, generator=gen, dtype=torch.float64)
        items = torch.randint(0, n, (4, 6), generator=gen)
        items[:, -2:] = 0  # padding, repeated
        upstream = torch.randn(4, 6, d, generator=gen, dtype=torch.float64)
        gcn = TemporalGCN(d, n_layers).double()

        results = {}
        for mode in ("dense", "local", "full", "auto"):
            x = x0.clone().requires_grad_(True)
            gcn.zero_grad(set_to_none=True)
            if mode == "dense":
                out = dense_reference(x, p_dense, gcn.weight, n_layers, gcn.negative_slope)[items]
            else:
                out = gcn(x, p, items, mode=mode)
            (out * upstream).sum().backward()
            w_grad = gcn.weight.grad.clone() if gcn.weight.grad is not None else torch.zeros(d, d)
            results[mode] = (out.detach(), x.grad.clone(), w_grad)
        for mode in ("local", "full", "auto"):
            for got, want in zip(results[mode], results["dense"], strict=True):
                assert_close(got, want, rtol=1e-10, atol=1e-12)
        if n_layers > 0:
            assert results["dense"][2].abs().sum() > 0  # W1 really receives a gradient


def test_temporal_gcn_k0_is_the_embedding() -> None:
    x0 = torch.randn(6, 3, requires_grad=True)
    p = to_csr(propagation_from_edges(torch.ones(6, 6) - torch.eye(6)))
    gcn = TemporalGCN(3, n_layers=0)
    out = gcn(x0, p, torch.tensor([[2, 2, 5]]))
    assert torch.equal(out, x0[[2, 2, 5]].unsqueeze(0))
    out.sum().backward()
    assert x0.grad[:, 0].tolist() == [0, 0, 2, 0, 0, 1]
    assert torch.equal(gcn.full_table(x0, p), x0)


def test_temporal_gcn_auto_picks_local_for_small_batches_and_full_for_the_table() -> None:
    gen = torch.Generator().manual_seed(7)
    n = 400
    p = to_csr(propagation_from_edges(random_edges(gen, n, 0.005)))
    x0 = torch.randn(n, 4, generator=gen)
    gcn = TemporalGCN(4, n_layers=2)
    gcn(x0, p, torch.tensor([1, 2, 3]))
    assert gcn.last_mode == "local"
    whole = gcn(x0, p, torch.arange(n))
    assert gcn.last_mode == "full"
    assert_close(whole, gcn(x0, p, torch.arange(n), mode="local"))
    # P (float64 here) is converted to the embeddings' dtype and transposed once per P object,
    # and that cache is not carried into copies
    gcn(x0.requires_grad_(True), p, torch.arange(n), mode="full")
    cached = gcn._cache
    assert cached is not None and cached[0] is p and cached[1].dtype == torch.float32 and cached[2] is not None
    gcn(x0, p, torch.tensor([[4, 5]]), mode="full").sum().backward()
    assert gcn._cache is not None and all(a is b for a, b in zip(gcn._cache, cached, strict=True))
    assert copy.deepcopy(gcn)._cache is None


def test_temporal_gcn_rejects_dense_propagation() -> None:
    with pytest.raises(ValueError):
        TemporalGCN(2, 1)(torch.zeros(3, 2), torch.eye(3), torch.tensor([0]))


def test_csr_row_block_equals_dense_rows() -> None:
    gen = torch.Generator().manual_seed(8)
    dense = propagation_from_edges(random_edges(gen, 25, 0.2))
    rows = torch.tensor([0, 3, 3, 24, 7])
    crow, col, values = csr_row_block(to_csr(dense), rows)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        block = torch.sparse_csr_tensor(crow, col, values, (len(rows), 25), check_invariants=True)
        block = block.to_dense()
    assert_close(block, dense[rows])


# --------------------------------------------------------------------------------------------
# AttentionReadout and Eq. 4
# --------------------------------------------------------------------------------------------
def set_readout_weights(readout: AttentionReadout) -> None:
    with torch.no_grad():
        readout.linear_one.weight.copy_(torch.eye(2))
        readout.linear_one.bias.zero_()
        readout.linear_two.weight.copy_(torch.eye(2))
        readout.linear_two.bias.zero_()
        readout.linear_three.weight.copy_(torch.tensor([[1.0, 1.0]]))
        readout.linear_transform.weight.copy_(torch.tensor([[1.0, 0, 2, 0], [0, 1.0, 0, 2]]))


def test_attention_readout_hand_example_with_padding() -> None:
    readout = AttentionReadout(2).double()
    assert readout.linear_transform.bias is None  # Eq. 7 has no bias
    set_readout_weights(readout)
    z = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, -7.0]]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False]])
    last = z[:, 1]
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    beta0 = sig(1) + sig(1)  # q . sigmoid(z_0 + z_l) = q . sigmoid([1, 1])
    beta1 = sig(0) + sig(2)  # q . sigmoid([0, 2])
    # s = pooled + 2 * z_l with pooled = beta0 * [1, 0] + beta1 * [0, 1]
    expected = [[beta0, beta1 + 2.0]]
    close(readout(z, mask, last), expected)


def test_attention_readout_ignores_padded_values_and_gradients() -> None:
    torch.manual_seed(9)
    readout = AttentionReadout(8)
    z = torch.randn(5, 6, 8)
    lengths = torch.tensor([1, 3, 6, 2, 4])
    mask = torch.arange(6).unsqueeze(0) < lengths.unsqueeze(1)
    last = z[torch.arange(5), lengths - 1]
    noisy = z.clone()
    noisy[~mask] = torch.randn(int((~mask).sum()), 8) * 100
    noisy[0, 5, 0] = float("nan")  # even NaN / inf at padded positions (e.g. unused gathers)
    noisy[1, 4, 1] = float("inf")
    outs, grads = [], []
    for values in (z, noisy):
        readout.zero_grad(set_to_none=True)
        out = readout(values, mask, last)
        out.pow(2).sum().backward()
        outs.append(out.detach())
        grads.append([prm.grad.clone() for prm in readout.parameters()])
    assert_close(outs[0], outs[1], rtol=0, atol=0)
    for a, b in zip(*grads, strict=True):
        assert_close(a, b, rtol=0, atol=0)
    # and the values at real positions do matter
    changed = z.clone()
    changed[0, 0] += 1
    assert not torch.allclose(readout(changed, mask, changed[torch.arange(5), lengths - 1]), outs[0])


def test_attention_readout_equals_recbole_srgnn_readout_formula() -> None:
    torch.manual_seed(11)
    readout = AttentionReadout(4, transform_bias=True)
    z = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    last = z[torch.arange(3), mask.sum(1) - 1]
    # RecBole SRGNN.forward, lines after gather_indexes
    q1 = readout.linear_one(last).view(3, 1, 4)
    q2 = readout.linear_two(z)
    alpha = readout.linear_three(torch.sigmoid(q1 + q2))
    a = torch.sum(alpha * z * mask.view(3, -1, 1).float(), 1)
    expected = readout.linear_transform(torch.cat([a, last], dim=1))
    assert_close(readout(z, mask, last), expected)


def test_l2_normalize_rows_and_zero_row() -> None:
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0], [-1e-3, 0.0]], requires_grad=True)
    y = l2_normalize(x)
    close(y, [[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]])
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    batch = torch.randn(2, 3, 7)
    assert_close(l2_normalize(batch).norm(dim=-1), torch.ones(2, 3))
