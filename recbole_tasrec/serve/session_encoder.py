r"""TASRec's session vectors for serving, in NumPy: the few sessions of a request at a quarter to a third of the cost.

A request batch holds a few sessions of a few clicks. ``TASRec.forward`` spends ~120 torch operations on them
(the session graphs, SR-GNN's gated GNN, the readout), each ~5-10 us of dispatch for microseconds of arithmetic:
1.66 / 1.76 ms for 1 / 4 sessions of a 40,000-item TASRec here, against 0.41 / 0.61 ms for the same equations in
NumPy (``benchmarks/bench_ranking.py``, ``benchmarks/results/ranking_2026-12-06_encoder.json``).
:class:`SessionEncoder` evaluates them on the served model's own weights (the item table read in place, the small
layer matrices copied once, transposed, and again after an edit in place), in the model's evaluation mode (dropout
off), and is tested equal to ``TASRec.forward`` for every setting it reads
(``tests/test_session_encoder.py``); the model stays the one definition that trains.

For padded sessions (RecBole's layout, :meth:`~recbole_tasrec.serve.served.ServedModel.pad`):

* 2.1: each session's graph over its distinct items (ascending item id, as ``build_session_graphs`` numbers
  them), ``A_out[u, v] = w(u->v) / sum_v' w(u->v')`` and ``A_in[v, u] = w(u->v) / sum_u' w(u'->v)``, ``w`` the
  count of the transition (or 1: ``session_edge_weight: binary``); ``step`` rounds of the gated GNN
  (:class:`~recbole_tasrec.model.session_graph.SessionGGNN`) from the items' embeddings -> ``h_p``;
* Eq. 2-4: ``x_p / ||x_p||`` read from the day's table (``TASRec.temporal_table``);
* Eq. 5: ``z_p = x_p / ||x_p|| + h_p`` (one term in an ablation);
* Eq. 6-7: ``beta_p = q^T sigmoid(W_2 z_p + W_3 z_l + b)``, ``s = W_4 [sum_p beta_p z_p || z_l]``.
"""

from __future__ import annotations

import numpy as np
import torch

from recbole_tasrec.model.tasrec import TASRec

__all__ = ["SessionEncoder"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _transposed(weight: torch.Tensor) -> np.ndarray:
    """``W^T`` as a C-ordered NumPy copy: ``x @ W^T`` then runs at twice the speed of the transposed view."""
    return np.ascontiguousarray(weight.detach().numpy().T)


def _linear(module: torch.nn.Linear) -> tuple[np.ndarray, np.ndarray | None]:
    """``(W^T, b)`` of a linear layer (``x @ W^T + b``)."""
    bias = module.bias
    return _transposed(module.weight), None if bias is None else bias.detach().numpy()


def _apply(x: np.ndarray, layer: tuple[np.ndarray, np.ndarray | None]) -> np.ndarray:
    weight_t, bias = layer
    return x @ weight_t if bias is None else x @ weight_t + bias


def weights_version(model: torch.nn.Module) -> tuple[int, ...]:
    """Each parameter's version counter: changed by any edit in place (what an encoder's copies must follow)."""
    return tuple(parameter._version for parameter in model.parameters())


class SessionEncoder:
    """``TASRec.forward`` in evaluation mode for padded sessions of at least one click each, on the CPU."""

    def __init__(self, model: TASRec) -> None:
        if model.item_embedding.weight.device.type != "cpu":
            raise ValueError("the NumPy session encoder reads the model's weights on the CPU")
        self.model, self.version = model, weights_version(model)  # held: the item table is read in place
        self.embedding = model.item_embedding.weight.detach().numpy()
        self.use_session_graph, self.use_temporal_graph = model.use_session_graph, model.use_temporal_graph
        self.binary_edges = model.session_edge_weight == "binary"
        gnn = model.session_gnn
        self.step, self.d = gnn.step, gnn.hidden_size
        self.edge_in, self.edge_out = _linear(gnn.linear_edge_in), _linear(gnn.linear_edge_out)
        w_ih_t = _transposed(gnn.w_ih)  # (2d, 3d): the rows of a_v's incoming half, then those of its outgoing one
        self.w_ih_in, self.w_ih_out = w_ih_t[: gnn.hidden_size], w_ih_t[gnn.hidden_size :]
        self.b_ih, self.w_hh_t, self.b_hh = gnn.b_ih.detach().numpy(), _transposed(gnn.w_hh), gnn.b_hh.detach().numpy()
        self.b_iah, self.b_ioh = gnn.b_iah.detach().numpy(), gnn.b_ioh.detach().numpy()
        readout = model.readout
        self.one, self.two = _linear(readout.linear_one), _linear(readout.linear_two)
        self.three, self.transform = _linear(readout.linear_three), _linear(readout.linear_transform)

    def __call__(self, item_seq: np.ndarray, item_seq_len: np.ndarray, temporal: np.ndarray | None) -> np.ndarray:
        """``s`` (Eq. 7), ``(B, d)``, of ``(B, L)`` right-padded item ids with ``(B,)`` lengths >= 1; ``temporal``:
        the day's ``x / ||x||`` table (``TASRec.temporal_table``), needed with ``use_temporal_graph``."""
        batch, length = item_seq.shape
        flat = np.flatnonzero(np.arange(length) < item_seq_len[:, None])  # real positions, row after row
        session = flat // length
        items = item_seq.reshape(-1)[flat]
        z = 0
        if self.use_session_graph:
            z = z + self.session_states(items, session, batch)
        if self.use_temporal_graph:
            z = z + temporal[items]
        ends = np.cumsum(item_seq_len)
        last = z[ends - 1]
        # Eq. 6-7 (every session has a position: its sum is over the rows from its start to its end)
        beta = _apply(_sigmoid(_apply(last, self.one)[session] + _apply(z, self.two)), self.three)
        pooled = np.add.reduceat(beta * z, ends - item_seq_len, axis=0)
        return _apply(np.concatenate([pooled, last], axis=1), self.transform)

    def session_states(self, items: np.ndarray, session: np.ndarray, batch: int) -> np.ndarray:
        """2.1: ``h_p`` of every real position (``items``, of the sessions ``session``), ``(M, d)``."""
        n_items = len(self.embedding)
        nodes, alias = np.unique(session * n_items + items, return_inverse=True)  # by session, then item id
        node_session, node_item = nodes // n_items, nodes % n_items
        local = np.arange(len(nodes)) - np.searchsorted(node_session, node_session)  # node index in its session
        width = int(local.max()) + 1
        same = session[1:] == session[:-1]  # consecutive clicks of one session: an edge
        src, dst = alias[:-1][same], alias[1:][same]
        cell = (node_session[src] * width + local[src]) * width + local[dst]
        adjacency = np.bincount(cell, minlength=batch * width * width).reshape(batch, width, width)
        adjacency = (adjacency > 0 if self.binary_edges else adjacency).astype(self.embedding.dtype)
        a_out = adjacency / np.maximum(adjacency.sum(2, keepdims=True), 1)
        a_in = adjacency.transpose(0, 2, 1) / np.maximum(adjacency.sum(1)[:, :, None], 1)

        def neighbours(adjacency_half: np.ndarray, messages: np.ndarray) -> np.ndarray:
            spread = np.zeros((batch, width, messages.shape[1]), dtype=messages.dtype)
            spread[node_session, local] = messages
            return np.matmul(adjacency_half, spread)[node_session, local]

        hidden = self.embedding[node_item]
        d = self.d
        for _ in range(self.step):  # SessionGGNN.cell
            input_in = neighbours(a_in, _apply(hidden, self.edge_in)) + self.b_iah
            input_out = neighbours(a_out, _apply(hidden, self.edge_out)) + self.b_ioh
            gi = input_in @ self.w_ih_in + input_out @ self.w_ih_out + self.b_ih  # W_ih [a_in || a_out] + b_ih
            gh = hidden @ self.w_hh_t + self.b_hh
            reset_gate = _sigmoid(gi[:, :d] + gh[:, :d])
            input_gate = _sigmoid(gi[:, d : 2 * d] + gh[:, d : 2 * d])
            new_gate = np.tanh(gi[:, 2 * d :] + reset_gate * gh[:, 2 * d :])
            hidden = (1 - input_gate) * hidden + input_gate * new_gate
        return hidden[alias]
