"""An independent whole-model check: Eq. 1-8 (docs/model.md), written here in plain dense torch (float64,
explicit loops, none of the package's layers), with the model's parameters, on hand-made sessions over a few
days. It must give the model's scores (and training loss) in training, validation and test, streaming and
frozen."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recbole_tasrec.config import Config
from recbole_tasrec.data import TASRecDataset
from recbole_tasrec.model import TASRec
from tests.conftest import small_settings

DAY = 86_400
N_DAYS, TEST_DAY_RATIO = 8, 0.25  # the last max(1, floor(8 * 0.25 + 1/2)) = 2 days test
N_TRAIN_DAYS = 6
SETTINGS = {
    "min_item_clicks": 1,
    "test_day_ratio": TEST_DAY_RATIO,
    "embedding_size": 6,
    "n_layers": 2,
    "step": 2,
    "dropout_prob": 0.0,
    "session_edge_weight": "count",
    "edge_weight": "binary",
    "decay": 0.5,
    "neighbor_threshold": 1.0,
    "leaky_relu_slope": 0.2,
}


def hand_made_sessions() -> dict[str, tuple[int, list[str]]]:
    """Session token -> (day, item tokens): 4 sessions a day over 9 items, one of them with repeated clicks."""
    rng = np.random.default_rng(5)
    sessions = {}
    for day in range(N_DAYS):
        for k in range(4):
            length = int(rng.integers(2, 6))
            items = [f"i{int(v)}" for v in rng.integers(1, 10, length)]
            if k == 0:  # a -> b twice, a -> c once: the count-weighted session graph differs from a 0/1 one
                items = ["i1", "i2", "i1", "i2", "i1", "i3", *items]
            sessions[f"s{day}{k}"] = (day, items)
    return sessions


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("handmade")
    sessions = hand_made_sessions()
    lines = ["session_id:token\titem_id:token\ttimestamp:float"]
    for sid, (day, items) in sessions.items():
        start = day * DAY + 3600 * (1 + int(sid[-1]))
        lines += [f"{sid}\t{item}\t{start + 60 * p}" for p, item in enumerate(items)]
    (root / "handmade").mkdir()
    (root / "handmade" / "handmade.inter").write_text("\n".join(lines) + "\n")
    config = Config("TASRec", "handmade", config_dict=small_settings(root, root / "runs", **SETTINGS))
    dataset = TASRecDataset(config)
    parts = dataset.build()
    torch.manual_seed(3)
    model = TASRec(config, parts[0])
    with torch.no_grad():  # the padding row stays zero in training; give it a value the model must ignore
        model.item_embedding.weight[0] = 0.5
    return dataset, parts, model, sessions


# --- the reference, from the equations -----------------------------------------------------------------
def temporal_graph(sessions: dict, t: int, n_items: int, item_id: dict) -> torch.Tensor:
    """Eq. 1: ``E_t = sum_{t' < t} e^{t'} / 2^(t-1-t')``, ``e^{t'}_ij = e^{t'}_ji = 1`` for consecutive clicks."""
    e_t = torch.zeros(n_items, n_items, dtype=torch.float64)
    for day in range(t):
        daily = torch.zeros(n_items, n_items, dtype=torch.float64)
        for session_day, items in sessions.values():
            if session_day != day:
                continue
            for a, b in zip(items[:-1], items[1:], strict=True):
                if a != b:
                    daily[item_id[a], item_id[b]] = daily[item_id[b], item_id[a]] = 1.0
        e_t += daily * 0.5 ** (t - 1 - day)
    return e_t


def temporal_embeddings(p: dict, e_t: torch.Tensor) -> torch.Tensor:
    """Eq. 2-4: neighbours with e_ij >= 1, K layers sharing W1, the mean of x^0..x^K, L2-normalised."""
    e = torch.where(e_t >= 1.0, e_t, torch.zeros_like(e_t))
    x = p["item_embedding.weight"]
    layers = [x]
    for _ in range(SETTINGS["n_layers"]):
        aggregated = (e @ x + x) / (e.sum(1, keepdim=True) + 1.0)
        x = torch.nn.functional.leaky_relu(aggregated @ p["temporal_gcn.weight"], SETTINGS["leaky_relu_slope"])
        layers.append(x)
    mean = torch.stack(layers).mean(0)
    norms = mean.norm(dim=1, keepdim=True)
    return torch.where(norms > 0, mean / norms.clamp_min(1e-300), mean)


def session_states(p: dict, prefix: list[int]) -> torch.Tensor:
    """2.1: SR-GNN's gated GNN on the session graph (occurrence-count edges), read back at each position."""
    nodes = sorted(set(prefix))
    index = {item: n for n, item in enumerate(nodes)}
    a = torch.zeros(len(nodes), len(nodes), dtype=torch.float64)
    for u, v in zip(prefix[:-1], prefix[1:], strict=True):
        a[index[u], index[v]] += 1.0
    a_out = a / a.sum(1, keepdim=True).clamp_min(1.0)
    a_in = a.t() / a.sum(0).unsqueeze(1).clamp_min(1.0)
    h = p["item_embedding.weight"][nodes]
    g = "session_gnn."
    d = h.size(1)
    for _ in range(SETTINGS["step"]):
        m_in = a_in @ (h @ p[g + "linear_edge_in.weight"].t() + p[g + "linear_edge_in.bias"]) + p[g + "b_iah"]
        m_out = a_out @ (h @ p[g + "linear_edge_out.weight"].t() + p[g + "linear_edge_out.bias"]) + p[g + "b_ioh"]
        gi = torch.cat([m_in, m_out], 1) @ p[g + "w_ih"].t() + p[g + "b_ih"]
        gh = h @ p[g + "w_hh"].t() + p[g + "b_hh"]
        reset = torch.sigmoid(gi[:, :d] + gh[:, :d])
        update = torch.sigmoid(gi[:, d : 2 * d] + gh[:, d : 2 * d])
        candidate = torch.tanh(gi[:, 2 * d :] + reset * gh[:, 2 * d :])
        h = (1 - update) * h + update * candidate
    return h[[index[item] for item in prefix]]


def reference_scores(p: dict, x_hat: torch.Tensor, prefix: list[int]) -> torch.Tensor:
    """Eq. 5-8: z_p = x_hat_{i_p} + h_p (no dropout), the attention readout, ``s X^T``; padding at -inf."""
    z = x_hat[prefix] + session_states(p, prefix)
    last = z[-1]
    r = "readout."
    gate = torch.sigmoid(
        z @ p[r + "linear_two.weight"].t()
        + p[r + "linear_two.bias"]
        + last @ p[r + "linear_one.weight"].t()
        + p[r + "linear_one.bias"]
    )
    beta = gate @ p[r + "linear_three.weight"].t()  # (l, 1)
    s = torch.cat([(beta * z).sum(0), last]) @ p[r + "linear_transform.weight"].t()
    scores = s @ p["item_embedding.weight"].t()
    scores[0] = float("-inf")  # Eq. 8 over real items
    return scores


# --- the comparison ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("split", "mode"),
    [("train", "streaming"), ("valid", "streaming"), ("test", "streaming"), ("valid", "frozen"), ("test", "frozen")],
)
def test_the_model_equals_the_reference(setup, split: str, mode: str) -> None:
    dataset, parts, model, sessions = setup
    part = parts[("train", "valid", "test").index(split)]
    assert dataset.n_days == N_DAYS and dataset.n_train_days == N_TRAIN_DAYS
    p = {name: value.detach().double() for name, value in model.state_dict().items() if name != "_extra_state"}
    item_id = {token: i for i, token in enumerate(dataset.field2id_token[dataset.iid_field])}
    session_tokens = dataset.field2id_token[dataset.uid_field]
    feat = part.inter_feat
    expected, targets = [], []
    for row in range(len(part)):
        day, items = sessions[session_tokens[int(feat[dataset.uid_field][row])]]
        length = int(feat[model.ITEM_SEQ_LEN][row])
        assert int(feat[dataset.day_field][row]) == day
        graph_day = min(day, N_TRAIN_DAYS) if mode == "frozen" and split != "train" else day
        x_hat = temporal_embeddings(p, temporal_graph(sessions, graph_day, model.n_items, item_id))
        expected.append(reference_scores(p, x_hat, [item_id[i] for i in items[:length]]))
        targets.append(item_id[items[length]])
    expected = torch.stack(expected)
    if mode == "frozen" and split == "test":  # the modes differ on this data: day 7 is scored with E_6
        assert int(feat[dataset.day_field].max()) > N_TRAIN_DAYS
    model.temporal_eval = mode
    model.train(split == "train")  # training mode: the day's own graph, the local GCN path (dropout is 0)
    try:
        with torch.no_grad():
            got = model.full_sort_predict(feat)
            loss = model.calculate_loss(feat)
    finally:
        model.temporal_eval = "streaming"
    assert len(part) > 0 and torch.equal(feat[model.ITEM_ID], torch.tensor(targets))
    assert torch.isinf(got[:, 0]).all()
    assert torch.allclose(got[:, 1:].double(), expected[:, 1:], rtol=0, atol=1e-5)
    reference_loss = torch.nn.functional.cross_entropy(expected, torch.tensor(targets))
    assert abs(float(loss) - float(reference_loss)) < 1e-5
