"""Tests of the temporal item graph (Eq. 1), its neighbour filter and Eq. 2's propagation matrix."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recbole_tasrec.data.clicks import transition_pairs
from recbole_tasrec.data.daily_graphs import DailyGraphs
from recbole_tasrec.data.temporal_graph import TemporalGraph, day_matrix, max_daily_weight, replay_horizon

FAST = settings(max_examples=40, deadline=None)
SLOW = settings(max_examples=15, deadline=None)


# --- helpers: an independent dense reference ---
def dense_day(pairs: list[tuple[int, int]], n: int, mode: str) -> np.ndarray:
    """e^{t'} of Eq. 1 with plain Python loops."""
    e = np.zeros((n, n))
    for i, j in pairs:
        if i == j:
            continue
        if mode == "binary":
            e[i, j] = e[j, i] = 1.0
        else:
            e[i, j] += 1.0
            e[j, i] += 1.0
    return e


def dense_closed_form(days: list[list[tuple[int, int]]], t: int, n: int, decay: float, mode: str) -> np.ndarray:
    """E_t = sum_{t' < t} e^{t'} decay^(t - 1 - t'), Eq. 1 in closed form."""
    e = np.zeros((n, n))
    for tp in range(t):
        e += dense_day(days[tp], n, mode) * decay ** (t - 1 - tp)
    return e


def as_arrays(pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    if not pairs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    arr = np.asarray(pairs, dtype=np.int64)
    return arr[:, 0], arr[:, 1]


def edge_set(mat: sp.csr_matrix) -> set[tuple[int, int]]:
    coo = mat.tocoo()
    return set(zip(coo.row.tolist(), coo.col.tolist(), strict=True))


def day_edge_set(pairs: list[tuple[int, int]]) -> set[tuple[int, int]]:
    return {(i, j) for i, j in pairs if i != j} | {(j, i) for i, j in pairs if i != j}


def chronological(days, n, **kw) -> list[TemporalGraph]:
    """graphs[t] = E_t, built strictly day by day."""
    g = TemporalGraph(n, **kw)
    out = [g.copy()]
    for pairs in days:
        g.advance(*as_arrays(pairs))
        out.append(g.copy())
    return out


@st.composite
def day_lists(draw, min_days=1, max_days=12, max_items=8, max_pairs=5):
    """(n_items, days): item 0 is padding, so pairs use ids 1..n_items-1; some days are empty."""
    n = draw(st.integers(3, max_items))
    item = st.integers(1, n - 1)
    days = draw(
        st.lists(
            st.one_of(st.just([]), st.lists(st.tuples(item, item), max_size=max_pairs)),
            min_size=min_days,
            max_size=max_days,
        )
    )
    return n, days


def check_canonical(w: sp.csr_matrix, n: int) -> None:
    assert isinstance(w, sp.csr_matrix)
    assert w.shape == (n, n)
    assert w.dtype == np.float64
    assert w.has_canonical_format and w.has_sorted_indices
    assert np.all(w.data != 0)  # no explicit zeros
    assert (w != w.T).nnz == 0  # symmetric
    assert np.all(w.diagonal() == 0)  # no self loops
    assert w[0].nnz == 0  # the padding item never has edges


# --- Eq. 1 ---
@FAST
@given(data=day_lists(), mode=st.sampled_from(["binary", "count"]), decay=st.sampled_from([0.5, 0.3, 0.8, 1.0]))
def test_eq1_closed_form(data, mode, decay):
    n, days = data
    g = TemporalGraph(n, decay=decay, edge_weight=mode, prune_below=0.0)
    assert g.day == 0 and g.weights().nnz == 0
    for t, pairs in enumerate(days, start=1):
        g.advance(*as_arrays(pairs))
        assert g.day == t
        w = g.weights()
        check_canonical(w, n)
        np.testing.assert_allclose(w.toarray(), dense_closed_form(days, t, n, decay, mode), rtol=1e-12, atol=0)


def test_eq1_by_hand_and_empty_day_decays():
    g = TemporalGraph(4, decay=0.5)
    g.advance(np.array([1, 2]), np.array([2, 3]))  # day 0: 1-2, 2-3
    g.advance(np.array([2, 1, 3]), np.array([1, 1, 3]))  # day 1: 2-1 (reverse direction), self pairs ignored
    expected = np.zeros((4, 4))
    expected[1, 2] = expected[2, 1] = 1 + 0.5
    expected[2, 3] = expected[3, 2] = 0.5
    np.testing.assert_array_equal(g.weights().toarray(), expected)
    g.advance(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))  # an empty day only decays
    g.advance([], [])  # plain empty lists are accepted too
    assert g.day == 4
    np.testing.assert_array_equal(g.weights().toarray(), expected / 4)


def test_count_mode_sums_both_directions():
    e = day_matrix(np.array([1, 1, 2, 3]), np.array([2, 2, 1, 1]), 4, "count").toarray()
    assert e[1, 2] == e[2, 1] == 3  # c(1->2) + c(2->1) = 2 + 1
    assert e[1, 3] == e[3, 1] == 1
    assert max_daily_weight(np.array([1, 1, 2, 3]), np.array([2, 2, 1, 1]), "count") == 3
    assert max_daily_weight(np.array([1, 1, 2, 3]), np.array([2, 2, 1, 1]), "binary") == 1
    assert max_daily_weight(np.array([2]), np.array([2]), "count") == 0  # only a self pair
    b = day_matrix(np.array([1, 1, 2, 3]), np.array([2, 2, 1, 1]), 4, "binary").toarray()
    assert b[1, 2] == b[2, 1] == b[1, 3] == 1 and b.sum() == 4


# --- the neighbour filter ---
@FAST
@given(data=day_lists(max_days=15))
def test_binary_half_threshold_one_is_yesterday(data):
    n, days = data
    graphs = chronological(days, n)  # defaults: binary, decay 1/2, pruned
    assert edge_set(graphs[0].neighbors(1.0)) == set()
    for t in range(1, len(days) + 1):
        nb = graphs[t].neighbors(1.0)
        assert edge_set(nb) == day_edge_set(days[t - 1])
        assert np.all((nb.data >= 1.0) & (nb.data < 2.0))
        # older history is carried in the weight, not as extra neighbours
        full = graphs[t].weights()
        assert np.all(full.data[full.data < 1.0] < 1.0)


def test_count_mode_keeps_old_frequent_edge():
    days = [[(1, 2)] * 4 + [(3, 1)], [], []]  # day 0: 1->2 four times, 3->1 once; then two empty days
    binary = chronological(days, 4, edge_weight="binary")[3]
    count = chronological(days, 4, edge_weight="count")[3]
    assert count.weights()[1, 2] == pytest.approx(4 * 0.25)
    assert binary.weights()[1, 2] == pytest.approx(0.25)
    # count mode: the old frequent edge survives the threshold-1 filter; binary mode: only yesterday's (none)
    assert edge_set(count.neighbors(1.0)) == {(1, 2), (2, 1)}
    assert edge_set(binary.neighbors(1.0)) == set()
    # the once-seen edge 1-3 fades out in both modes
    assert count.weights()[1, 3] == pytest.approx(0.25)


# --- pruning ---
@SLOW
@given(
    data=day_lists(min_days=20, max_days=40, max_items=7, max_pairs=3),
    mode=st.sampled_from(["binary", "count"]),
    decay=st.sampled_from([0.5, 0.3, 0.8]),
    prune=st.sampled_from([2**-16, 0.01, 0.2, 1.0]),
)
def test_pruning_error_bound(data, mode, decay, prune):
    n, days = data
    exact = chronological(days, n, decay=decay, edge_weight=mode, prune_below=0.0)
    pruned = chronological(days, n, decay=decay, edge_weight=mode, prune_below=prune)
    bound = prune / (1 - decay)
    assert pruned[-1].error_bound == pytest.approx(bound)
    for t in range(len(days) + 1):
        e, p = exact[t].weights().toarray(), pruned[t].weights().toarray()
        diff = e - p
        assert diff.min() >= -1e-12  # pruning only removes mass
        assert diff.max() < bound
        w = pruned[t].weights()
        assert w.nnz == 0 or w.data.min() >= prune  # nothing below the threshold is stored
        nb_e, nb_p = edge_set(exact[t].neighbors(1.0)), edge_set(pruned[t].neighbors(1.0))
        assert nb_p <= nb_e
        for i, j in nb_e - nb_p:  # a neighbour can only be lost if its exact weight is just above 1
            assert 1.0 <= e[i, j] < 1.0 + bound
        if decay == 0.5:  # dyadic weights: no exact weight falls in [1, 1 + bound), sets are identical
            assert nb_p == nb_e


def test_pruning_drops_faded_entries():
    g = TemporalGraph(4)  # binary, decay 1/2, prune 2^-16
    g.advance([1], [2])
    for _ in range(16):
        g.advance([], [])
    assert g.weights()[1, 2] == 2.0**-16  # exactly at the threshold: kept
    g.advance([], [])
    assert g.nnz == 0  # 2^-17 < 2^-16: dropped
    exact = TemporalGraph(4, prune_below=0.0)
    exact.advance([1], [2])
    for _ in range(17):
        exact.advance([], [])
    assert exact.weights()[1, 2] == 2.0**-17


# --- Eq. 2 propagation ---
def test_propagation_by_hand():
    g = TemporalGraph(4)
    g.advance([1, 2], [2, 3])  # day 0: 1-2, 2-3
    g.advance([1], [2])  # day 1: 1-2 -> E_12 = 1.5, E_23 = 0.5
    p = g.propagation(1.0)
    assert p.layout == torch.sparse_csr and p.dtype == torch.float32 and p.shape == (4, 4)
    # threshold 1 keeps only 1-2 (1.5): row 1 = (I + 1.5 e_2) / 2.5, rows 0 (padding) and 3 identity
    expected = np.array(
        [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 0.4, 0.6, 0.0],
            [0.0, 0.6, 0.4, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    np.testing.assert_allclose(p.to_dense().numpy(), expected, rtol=1e-6)
    # threshold 0.5 also keeps 2-3 (0.5): row 2 = (1.5 e_1 + I + 0.5 e_3) / 3, row 3 = (0.5 e_2 + I) / 1.5
    expected_half = expected.copy()
    expected_half[2] = [0.0, 0.5, 1 / 3, 1 / 6]
    expected_half[3] = [0.0, 0.0, 1 / 3, 2 / 3]
    np.testing.assert_allclose(g.propagation(0.5).to_dense().numpy(), expected_half, rtol=1e-6)
    x = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    np.testing.assert_allclose((p @ x).numpy(), expected @ x.numpy(), rtol=1e-6)


@FAST
@given(
    data=day_lists(max_days=6),
    mode=st.sampled_from(["binary", "count"]),
    threshold=st.sampled_from([0.0, 0.3, 1.0, 2.0]),
)
def test_propagation_matches_dense_formula(data, mode, threshold):
    n, days = data
    g = chronological(days, n, edge_weight=mode)[-1]
    e = g.weights().toarray()
    masked = np.where(e >= threshold, e, 0.0)
    expected = (masked + np.eye(n)) / (masked.sum(axis=1, keepdims=True) + 1.0)
    p = g.propagation(threshold).to_dense().numpy()
    np.testing.assert_allclose(p, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(p[0], np.eye(n)[0])  # padding row is the identity


def test_propagation_emits_no_warning(recwarn):
    g = TemporalGraph(3)
    g.advance([1], [2])
    g.propagation()
    assert not [w for w in recwarn if "sparse" in str(w.message).lower()]


# --- transition_pairs ---
def test_transition_pairs_by_hand():
    sessions = np.array([0, 0, 0, 0, 1, 1, 2, 3, 3])
    items = np.array([1, 2, 2, 3, 4, 5, 6, 7, 1])
    src, dst = transition_pairs(sessions, items, window=1)
    # 2->2 is a self pair; 3->4, 5->6, 6->7 cross sessions
    assert src.tolist() == [1, 2, 4, 7] and dst.tolist() == [2, 3, 5, 1]
    src, dst = transition_pairs(sessions, items, window=2)
    # offset 2 adds 1->2 (pos 0->2) and 2->3 (pos 1->3); ordered by src position, then offset
    assert src.tolist() == [1, 1, 2, 2, 4, 7] and dst.tolist() == [2, 2, 3, 3, 5, 1]
    assert src.dtype == np.int64 and dst.dtype == np.int64
    # sessions ordered by start time need not have increasing ids, only contiguous clicks
    src, dst = transition_pairs(np.array([7, 7, 2, 2, 5]), np.array([1, 2, 3, 4, 5]))
    assert src.tolist() == [1, 3] and dst.tolist() == [2, 4]
    src, dst = transition_pairs(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), window=3)
    assert src.size == dst.size == 0


@FAST
@given(
    lengths=st.lists(st.integers(1, 6), min_size=1, max_size=6),
    window=st.integers(1, 4),
    data=st.data(),
)
def test_transition_pairs_matches_loop(lengths, window, data):
    # gaps and a non-monotone order of session ids are fine, as long as each session is contiguous
    sessions = np.repeat(np.random.default_rng(len(lengths)).permutation(len(lengths)) * 3, lengths)
    items = np.asarray(data.draw(st.lists(st.integers(1, 5), min_size=len(sessions), max_size=len(sessions))))
    expected = []
    start = 0
    for length in lengths:
        seq = items[start : start + length].tolist()
        for a in range(length):
            for k in range(1, window + 1):
                if a + k < length and seq[a] != seq[a + k]:
                    expected.append((seq[a], seq[a + k]))
        start += length
    src, dst = transition_pairs(sessions, items, window)
    assert list(zip(src.tolist(), dst.tolist(), strict=True)) == expected


# --- DailyGraphs ---
@st.composite
def access_orders(draw, n_days):
    return draw(st.lists(st.integers(0, n_days), min_size=1, max_size=12))


@SLOW
@given(
    data=day_lists(min_days=10, max_days=30, max_items=7, max_pairs=3),
    mode=st.sampled_from(["binary", "count"]),
    prune=st.sampled_from([2**-16, 0.05, 1.0]),
    st_data=st.data(),
)
def test_daily_graphs_random_access(data, mode, prune, st_data):
    n, days = data
    order = st_data.draw(access_orders(len(days)))
    order = [len(days), 0, *order]  # at least one long backward jump
    pairs = [as_arrays(p) for p in days]
    exact_ref = chronological(days, n, edge_weight=mode, prune_below=0.0)
    pruned_ref = chronological(days, n, edge_weight=mode, prune_below=prune)
    dg = DailyGraphs(pairs, n, edge_weight=mode, prune_below=prune)
    dg0 = DailyGraphs(pairs, n, edge_weight=mode, prune_below=0.0)
    assert dg0.horizon is None and dg.horizon is not None
    bound = prune / 0.5
    for t in order:
        g = dg.graph(t)
        assert g.day == t
        got, ref = g.weights().toarray(), pruned_ref[t].weights().toarray()
        assert np.abs(got - ref).max(initial=0.0) < bound
        assert (exact_ref[t].weights().toarray() - got).min(initial=0.0) >= -1e-12
        if mode == "binary":
            assert edge_set(g.neighbors(1.0)) == edge_set(pruned_ref[t].neighbors(1.0))
        # prune_below = 0: infinite horizon, the replay starts at day 0 and is exact
        g0 = dg0.graph(t)
        assert (g0.weights() != exact_ref[t].weights()).nnz == 0
        np.testing.assert_allclose(
            dg.propagation(t).to_dense().numpy(),
            g.propagation(1.0).to_dense().numpy(),
            rtol=1e-6,
        )


def test_daily_graphs_chronological_is_exact():
    rng = np.random.default_rng(0)
    days = [[tuple(rng.integers(1, 12, 2)) for _ in range(rng.integers(0, 6))] for _ in range(40)]
    ref = chronological(days, 12, edge_weight="count", prune_below=0.01)
    dg = DailyGraphs([as_arrays(p) for p in days], 12, edge_weight="count", prune_below=0.01)
    for t in range(41):
        assert (dg.graph(t).weights() != ref[t].weights()).nnz == 0


@pytest.mark.parametrize("prune", [0.0, 2**-16, 0.1])
def test_daily_graphs_never_leak_future_days(prune):
    n_days = 25
    # day t plants the unique edge (2t+1) - (2t+2), plus a repeated background edge
    days = [(np.array([2 * t + 1, 60]), np.array([2 * t + 2, 61])) for t in range(n_days)]
    dg = DailyGraphs(days, 62, prune_below=prune)
    rng = np.random.default_rng(1)
    for t in [n_days, 0, 7, 3, 20, 19, 25, *rng.integers(0, n_days + 1, 20).tolist()]:
        w = dg.graph(t).weights()
        for tp in range(n_days):
            if tp >= t:
                assert w[2 * tp + 1, 2 * tp + 2] == 0, (t, tp)
            elif prune == 0.0:
                assert w[2 * tp + 1, 2 * tp + 2] == 0.5 ** (t - 1 - tp)
        p = dg.propagation(t).to_dense().numpy()
        assert all(p[2 * tp + 1, 2 * tp + 2] == 0 for tp in range(t, n_days))


def test_memory_bounded_over_200_days():
    rng = np.random.default_rng(2)
    n, n_days, per_day = 3000, 200, 40
    days = [(rng.integers(1, n, per_day), rng.integers(1, n, per_day)) for _ in range(n_days)]
    pruned = TemporalGraph(n)
    unpruned = TemporalGraph(n, prune_below=0.0)
    nnz, nnz_unpruned = [], []
    for src, dst in days:
        pruned.advance(src, dst)
        unpruned.advance(src, dst)
        nnz.append(pruned.nnz)
        nnz_unpruned.append(unpruned.nnz)
    # an entry survives at most 17 days without a refresh (2^-17 < 2^-16): 18 days of edges at most
    cap = 2 * per_day * 18
    assert max(nnz) <= cap
    assert nnz[-1] <= nnz[99] * 1.2  # flat, not growing with the number of days
    assert nnz_unpruned[-1] > 5 * cap  # without pruning it grows linearly (the test can fail)
    dg = DailyGraphs(days, n)
    for t in [n_days, 50, 120, n_days, 10, 199]:
        dg.graph(t)
        assert dg.nnz <= cap
    np.testing.assert_array_equal(dg.graph(n_days).weights().toarray(), pruned.weights().toarray())


def test_daily_graphs_append_day_and_cache():
    rng = np.random.default_rng(3)
    days = [(rng.integers(1, 9, 4), rng.integers(1, 9, 4)) for _ in range(12)]
    full = DailyGraphs(days, 9)
    part = DailyGraphs(days[:5], 9)
    assert part.n_days == len(part) == 5
    with pytest.raises(ValueError, match=r"outside \[0, n_days=5\]"):
        part.graph(6)
    p5 = part.propagation(5)
    assert part.propagation(5) is p5  # cached
    for src, dst in days[5:]:
        part.append_day(src, dst)
    assert part.n_days == 12
    assert part.propagation(5) is p5  # still valid: day 5's graph only uses days 0..4
    for t in [12, 3, 8]:
        assert (part.graph(t).weights() != full.graph(t).weights()).nnz == 0
    part.propagation(1)
    part.propagation(2)
    assert part.propagation(5) is not p5  # only the last two results are kept
    g = part.graph(4)
    g.advance([1], [2])  # the returned graph is a copy: the object's state is untouched
    assert part.graph(5).day == 5 and part.graph(4).day == 4


def test_daily_graphs_count_horizon_uses_max_daily_weight():
    days = [(np.array([1, 1, 1, 2]), np.array([2, 2, 2, 1])), (np.array([3]), np.array([4]))]
    dg = DailyGraphs(days, 5, edge_weight="count")
    assert dg.max_daily_weight == 4
    assert dg.horizon == replay_horizon(0.5, 2**-16, 4) > replay_horizon(0.5, 2**-16, 1)
    assert DailyGraphs(days, 5).max_daily_weight == 1


@pytest.mark.parametrize("decay", [0.5, 0.3, 0.9])
@pytest.mark.parametrize("prune", [2**-16, 0.01, 1.0])
@pytest.mark.parametrize("w", [1, 7])
def test_replay_horizon_is_smallest(decay, prune, w):
    h = replay_horizon(decay, prune, w)
    g = next(k for k in range(1, 10_000) if decay**k < prune)
    slack = prune * (decay - decay ** (g + 1)) / (1 - decay ** (g + 1))
    assert w * decay**h <= slack
    assert h == 0 or w * decay ** (h - 1) > slack
    # the omitted history plus the replay's own pruning error fit within the pruning bound
    assert w * decay**h / (1 - decay) + prune / (1 - decay ** (g + 1)) <= prune / (1 - decay) * (1 + 1e-12)


def test_replay_horizon_infinite_or_zero():
    assert replay_horizon(0.5, 0.0, 1) is None
    assert replay_horizon(1.0, 2**-16, 1) is None
    assert replay_horizon(0.5, 2**-16, 0) == 0
    assert replay_horizon(0.5, 2**-16, 1) == 18


# --- persistence ---
def test_state_dict_round_trip_and_copy():
    g = TemporalGraph(6, decay=0.3, edge_weight="count", prune_below=0.001)
    for src, dst in [([1, 2, 3], [2, 3, 4]), ([], []), ([5, 5], [1, 1])]:
        g.advance(src, dst)
    state = g.state_dict()
    assert all(isinstance(v, np.ndarray | int | float | str | type(None)) for v in state.values())
    h = TemporalGraph.from_state_dict(state)
    assert (h.day, h.n_items, h.decay, h.edge_weight, h.prune_below) == (3, 6, 0.3, "count", 0.001)
    assert (h.weights() != g.weights()).nnz == 0
    h.advance([1], [2])
    g.advance([1], [2])
    assert (h.weights() != g.weights()).nnz == 0  # the restored graph keeps evolving identically
    c = g.copy()
    c.advance([3], [4])
    assert c.day == g.day + 1 and g.weights()[3, 4] != c.weights()[3, 4]
    w = g.weights()
    w.data[:] = 99.0  # weights() returns a copy
    assert g.weights().max() < 99.0


def test_from_state_dict_rejects_corrupt_state():
    g = TemporalGraph(4)
    g.advance([1], [2])
    state = g.state_dict()
    with pytest.raises(ValueError, match="missing keys"):
        TemporalGraph.from_state_dict({k: v for k, v in state.items() if k != "data"})
    asym = dict(state, indptr=np.array([0, 0, 1, 1, 1]), indices=np.array([2]), data=np.array([1.0]))
    with pytest.raises(ValueError, match="not symmetric"):
        TemporalGraph.from_state_dict(asym)
    with pytest.raises(ValueError, match="inconsistent CSR"):
        TemporalGraph.from_state_dict(dict(state, indptr=np.array([0, 1])))
    with pytest.raises(ValueError, match="negative or non-finite"):
        TemporalGraph.from_state_dict(dict(state, data=-state["data"]))


# --- bad inputs ---
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_items": 0}, "n_items must be a positive integer"),
        ({"n_items": 4, "decay": 0.0}, r"decay must be in \(0, 1\]"),
        ({"n_items": 4, "decay": 1.5}, r"decay must be in \(0, 1\]"),
        ({"n_items": 4, "edge_weight": "weighted"}, "edge_weight must be one of"),
        ({"n_items": 4, "prune_below": -1e-3}, r"prune_below must be in \[0, 1\]"),
        ({"n_items": 4, "prune_below": 2.0}, r"prune_below must be in \[0, 1\]"),
        ({"n_items": 4, "padding_idx": 4}, "padding_idx must be None or in"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TemporalGraph(**kwargs)


def test_bad_transitions():
    g = TemporalGraph(4)
    with pytest.raises(ValueError, match="outside \\[0, n_items=4\\)"):
        g.advance([1], [4])
    with pytest.raises(ValueError, match="outside"):
        g.advance([-1], [2])
    with pytest.raises(ValueError, match="same length"):
        g.advance([1, 2], [3])
    with pytest.raises(ValueError, match="padding item id 0"):
        g.advance([0], [2])
    with pytest.raises(ValueError, match="must hold integers"):
        g.advance([1.5], [2.0])
    with pytest.raises(ValueError, match="1-D"):
        g.advance([[1]], [[2]])
    assert g.day == 0 and g.nnz == 0  # a rejected day changes nothing
    free = TemporalGraph(4, padding_idx=None)
    free.advance([0], [2])  # without a padding item, id 0 is an ordinary item
    assert free.weights()[0, 2] == 1.0
    with pytest.raises(ValueError, match="threshold must be a finite number >= 0"):
        g.propagation(-1.0)


def test_bad_transition_pairs_and_daily_graphs_inputs():
    with pytest.raises(ValueError, match="same length"):
        transition_pairs(np.array([0, 0]), np.array([1]))
    with pytest.raises(ValueError, match="contiguous"):
        transition_pairs(np.array([1, 0, 1]), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        transition_pairs(np.array([0, 0]), np.array([1, 2]), window=0)
    with pytest.raises(ValueError, match=r"day_transitions\[1\]: .*outside"):
        DailyGraphs([([1], [2]), ([1], [9])], 4)
    with pytest.raises(ValueError, match=r"day_transitions\[0\] must be a \(src, dst\) pair"):
        DailyGraphs([([1], [2], [3])], 4)
    with pytest.raises(ValueError, match=r"day_transitions\[0\]: src must be a 1-D array"):
        DailyGraphs([np.array([1, 2])], 4)
    stacked = DailyGraphs([np.array([[1, 2], [2, 3]])], 4)  # a (2, N) array is a (src, dst) pair too
    assert edge_set(stacked.graph(1).weights()) == {(1, 2), (2, 1), (2, 3), (3, 2)}
    dg = DailyGraphs([([1], [2])], 4)
    for bad in (-1, 2, 1.0, True):
        with pytest.raises(ValueError, match="day"):
            dg.graph(bad)
    with pytest.raises(ValueError, match="padding"):
        dg.append_day([0], [1])
    assert dg.n_days == 1  # a rejected day is not appended


def test_propagation_follows_the_graph_after_a_replay():
    """Found by hypothesis in CI: P cached on one line of days must not outlive a replay that starts another."""
    pair = (np.array([1]), np.array([2]))
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    days = [empty] * 10 + [(np.array([1, 1]), np.array([2, 2]))] + [empty] * 5 + [pair, empty, pair]
    graphs = DailyGraphs(days, 3, edge_weight="count", prune_below=0.05)
    for t in (19, 18, 19):
        np.testing.assert_allclose(
            graphs.propagation(t).to_dense().numpy(), graphs.graph(t).propagation(1.0).to_dense().numpy(), rtol=1e-6
        )
