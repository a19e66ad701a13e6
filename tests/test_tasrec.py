"""The TASRec model on a RecBole data set: no leakage, the equations composed, modes, checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from recbole.data.interaction import Interaction

from recbole_tasrec import load_data_and_model, run_recbole_tasrec
from recbole_tasrec.config import Config
from recbole_tasrec.data import TASRecDataset
from recbole_tasrec.model import TASRec
from recbole_tasrec.model.graph_source import GraphSource
from recbole_tasrec.serve.recommender import LatestGraph
from tests.conftest import small_settings


@pytest.fixture(scope="module")
def setup(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    config = Config("TASRec", "tiny", config_dict=small_settings(data_dir, tmp_path_factory.mktemp("runs")))
    dataset = TASRecDataset(config)
    train, valid, test = dataset.build()
    torch.manual_seed(0)
    model = TASRec(config, train).eval()
    return config, dataset, (train, valid, test), model


def batch_of(part, rows: np.ndarray) -> Interaction:
    return part.inter_feat[torch.as_tensor(rows)]


def test_graph_of_a_day_holds_only_earlier_days_edges(setup) -> None:
    _, dataset, _, model = setup
    transitions = dataset.day_clicks.transitions()
    for t in range(dataset.n_days):
        weights = model.graph_source.graph(t).weights()
        earlier = {(int(a), int(b)) for d in range(t) for a, b in zip(*transitions[d], strict=True)}
        present = set(zip(*weights.nonzero(), strict=True))
        assert present <= earlier | {(b, a) for a, b in earlier}


def test_forward_composes_eq_2_to_7(setup) -> None:
    """With dropout off, forward = readout(x_hat / ||x_hat|| + h) computed from the layers by hand."""
    _, dataset, (_, valid, _), model = setup
    batch = batch_of(valid, np.arange(16))
    day = batch[dataset.day_field].long()
    seq, seq_len = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    with torch.no_grad():
        s = model(seq, seq_len, day)
        z = torch.zeros(seq.shape + (model.embedding_size,))
        for i in range(len(seq)):
            p = model.graph_source.propagation(int(day[i]))
            x = model.temporal_gcn(model.item_embedding.weight, p, seq[i : i + 1])
            z[i] = torch.nn.functional.normalize(x[0], dim=-1)
        real = model.real_positions(seq, seq_len)
        z = z.index_put((real,), z[real] + model.session_states(seq, seq_len))
        last = z[torch.arange(len(seq)), seq_len - 1]
        expected = model.readout(z, real, last)
    assert torch.allclose(s, expected, atol=1e-5)


def test_session_states_are_per_node(setup) -> None:
    """2.1 works on the session graph: two positions holding the same item get the same ``h``."""
    _, _, (train, _, _), model = setup
    seq, seq_len = train.inter_feat[model.ITEM_SEQ], train.inter_feat[model.ITEM_SEQ_LEN]
    b, p, q = next(
        (b, p, q)
        for b in range(len(seq))
        for p in range(int(seq_len[b]))
        for q in range(p + 1, int(seq_len[b]))
        if seq[b, p] == seq[b, q]
    )
    with torch.no_grad():
        h = model.session_states(seq[b : b + 1], seq_len[b : b + 1])
    assert h.shape == (int(seq_len[b]), model.embedding_size)  # one row per real position
    assert torch.equal(h[p], h[q])
    assert not torch.equal(h[p], model.item_embedding.weight[seq[b, p]])


def test_mixed_day_batches_score_like_single_day_batches(setup) -> None:
    _, dataset, (_, _, test), model = setup
    days = test.inter_feat[dataset.day_field].long().numpy()
    rows = np.concatenate([np.flatnonzero(days == t)[:5] for t in np.unique(days)])
    assert len(np.unique(days[rows])) > 1
    with torch.no_grad():
        mixed = model.full_sort_predict(batch_of(test, rows))
        single = torch.cat([model.full_sort_predict(batch_of(test, rows[days[rows] == t])) for t in np.unique(days)])
    assert torch.allclose(mixed, single, atol=1e-5)


def test_frozen_mode_stops_the_graph_at_the_end_of_training(setup) -> None:
    _, dataset, (_, _, test), model = setup
    days = test.inter_feat[dataset.day_field].long().numpy()
    last = np.flatnonzero(days == days.max())[:8]
    batch = batch_of(test, last)
    with torch.no_grad():
        streaming = model.full_sort_predict(batch)
        model.temporal_eval = "frozen"
        try:
            frozen = model.full_sort_predict(batch)
            as_first_test_day = batch_of(test, last)
            as_first_test_day[dataset.day_field] = torch.full((len(last),), float(dataset.n_train_days))
            model.temporal_eval = "streaming"
            first_day_graph = model.full_sort_predict(as_first_test_day)
        finally:
            model.temporal_eval = "streaming"
    assert days.max() > dataset.n_train_days
    assert not torch.allclose(streaming, frozen)
    assert torch.allclose(frozen, first_day_graph)


@pytest.mark.parametrize(
    ("overrides", "gnn_used", "gcn_used"),
    [
        ({"use_temporal_graph": False}, True, False),  # TASRec-base
        ({"use_session_graph": False}, False, True),  # TASRec-temp
    ],
)
def test_ablations_drop_one_view(data_dir: Path, tmp_path: Path, overrides, gnn_used, gcn_used) -> None:
    config = Config("TASRec", "tiny", config_dict=small_settings(data_dir, tmp_path, **overrides))
    dataset = TASRecDataset(config)
    train, _, _ = dataset.build()
    model = TASRec(config, train)
    loss = model.calculate_loss(train.inter_feat[torch.arange(32)])
    loss.backward()
    gnn_grad = model.session_gnn.w_ih.grad if hasattr(model.session_gnn, "w_ih") else None
    assert (gnn_grad is not None and gnn_grad.abs().sum() > 0) == gnn_used
    gcn_grad = model.temporal_gcn.weight.grad
    assert (gcn_grad is not None and gcn_grad.abs().sum() > 0) == gcn_used


def test_both_views_off_is_an_error(data_dir: Path, tmp_path: Path) -> None:
    settings = small_settings(data_dir, tmp_path, use_temporal_graph=False, use_session_graph=False)
    with pytest.raises(ValueError, match="cannot both be False"):  # refused with the settings, before any data
        Config("TASRec", "tiny", config_dict=settings)


@pytest.mark.parametrize("mode", ["streaming", "frozen"])
def test_end_to_end_and_checkpoint_round_trip(data_dir: Path, tmp_path: Path, mode: str) -> None:
    settings = small_settings(data_dir, tmp_path, temporal_eval=mode)
    result = run_recbole_tasrec("TASRec", "tiny", config_dict=settings)
    assert 0.0 <= result["test_result"]["recall@20"] <= 1.0
    assert result["checkpoint"] and Path(result["checkpoint"]).is_file()
    assert Path(result["checkpoint"]).is_relative_to(tmp_path)

    config, model, _, _, _, test_data = load_data_and_model(result["checkpoint"])
    model.eval()
    batch = next(iter(test_data))[0]
    with torch.no_grad():
        first = model.full_sort_predict(batch)
    checkpoint = torch.load(result["checkpoint"], weights_only=False)
    again = TASRec(config, test_data._dataset)
    again.load_state_dict(checkpoint["state_dict"])
    again.eval()
    with torch.no_grad():
        assert torch.allclose(first, again.full_sort_predict(batch))
    # the checkpoint carries the graph after every known day and the raw item ids
    graph = TASRec.saved_graph(checkpoint["state_dict"])
    source = test_data._dataset.graph_source(config)
    assert graph.day == source.n_days == test_data._dataset.n_days
    assert (graph.weights() != source.graph(source.n_days).weights()).nnz == 0
    assert list(checkpoint["other_parameter"]["item_tokens"]) == list(again.item_tokens)


def test_tasrec_needs_the_day_indexed_dataset(data_dir: Path, tmp_path: Path) -> None:
    from recbole.data.dataset import SequentialDataset

    config = Config("TASRec", "tiny", config_dict=small_settings(data_dir, tmp_path))
    with pytest.raises(TypeError, match="TASRecDataset"):
        TASRec(config, SequentialDataset(config))


def test_a_model_built_from_a_graph_source_scores_like_one_built_from_the_dataset(setup) -> None:
    """The seam: ``from_graph_source`` (no data set) with the data set's own source is the same model."""
    config, dataset, (_, _, test), model = setup
    source = dataset.graph_source(config)
    assert isinstance(source, GraphSource) and isinstance(LatestGraph(source.latest_graph(), 1.0), GraphSource)
    twin = TASRec.from_graph_source(config, dataset.field2id_token[dataset.iid_field], source, dataset.n_train_days)
    twin.load_state_dict(model.state_dict())
    twin.eval()
    batch = batch_of(test, np.arange(20))
    with torch.no_grad():
        assert torch.equal(twin.full_sort_predict(batch), model.full_sort_predict(batch))
    assert twin.n_items == model.n_items and list(twin.item_tokens) == list(model.item_tokens)


def test_bad_graph_sources_and_state_dicts_are_named(setup) -> None:
    config, dataset, _, model = setup
    with pytest.raises(TypeError, match="propagation"):
        TASRec.from_graph_source(config, dataset.field2id_token[dataset.iid_field], object())
    with pytest.raises(ValueError, match="no temporal graph"):
        TASRec.saved_graph({"item_embedding.weight": model.item_embedding.weight})


def test_the_model_runs_in_double_precision(setup) -> None:
    """``model.double()`` works (the session graphs take the embeddings' dtype) and agrees with float32."""
    config, dataset, (train, _, test), model = setup
    twin = TASRec(config, train)
    twin.load_state_dict(model.state_dict())
    twin.double().eval()
    batch = batch_of(test, np.arange(20))
    with torch.no_grad():
        scores = twin.full_sort_predict(batch)
        assert scores.dtype == torch.float64
        assert torch.allclose(scores.float(), model.full_sort_predict(batch), atol=1e-5)
    twin.train()
    loss = twin.calculate_loss(batch_of(train, np.arange(32)))
    loss.backward()
    assert loss.dtype == torch.float64 and twin.item_embedding.weight.grad.dtype == torch.float64


def test_the_padding_item_never_competes_nor_ranks(setup) -> None:
    """Eq. 8 masks item 0: the loss is the softmax CE over real items only, training never moves the padding
    row (Adam with L2 included), and no prediction ranks it."""
    config, dataset, (train, _, test), model = setup
    twin = TASRec(config, train)
    twin.load_state_dict(model.state_dict())
    twin.train()
    twin.dropout.p = 0.0
    batch = batch_of(train, np.arange(64))
    with torch.no_grad():
        s = twin(batch[twin.ITEM_SEQ], batch[twin.ITEM_SEQ_LEN], batch[dataset.day_field].long())
        real = s @ twin.item_embedding.weight[1:].t()
        expected = torch.nn.functional.cross_entropy(real, batch[twin.POS_ITEM_ID] - 1)
    assert torch.allclose(twin.calculate_loss(batch), expected, atol=1e-6)
    optimizer = torch.optim.Adam(twin.parameters(), lr=0.01, weight_decay=1e-3)
    for start in range(0, 320, 64):
        optimizer.zero_grad()
        twin.calculate_loss(batch_of(train, np.arange(start, start + 64))).backward()
        optimizer.step()
    assert twin.item_embedding.weight[0].abs().max() == 0
    twin.eval()
    with torch.no_grad():
        scores = twin.full_sort_predict(batch_of(test, np.arange(len(test))))
    assert torch.isinf(scores[:, 0]).all() and (scores[:, 0] < 0).all()
    assert torch.isfinite(scores[:, 1:]).all()
    assert not (scores.topk(scores.size(1) - 1, dim=1).indices == 0).any()
