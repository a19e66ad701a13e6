r"""TASRec: Temporal Augmented graph neural network for Session-based Recommendation.

Reference:
    Huachi Zhou, Qiaoyu Tan, Xiao Huang, Kaixiong Zhou, Xiaoling Wang. "Temporal Augmented Graph Neural
    Networks for Session-Based Recommendations." SIGIR 2021 (short paper).

The model reads top to bottom like the paper (docs/model.md):

* 2.1   intra-session layer: SR-GNN's gated GNN on each session graph -> ``h_1..h_l``;
* Eq. 1 the temporal graph ``E_t`` of the sample's day, from days before it only (a :class:`GraphSource`);
* Eq. 2-3 a GCN over ``E_t`` (neighbours with ``e_ij >= neighbor_threshold``) -> ``x_i``;
* Eq. 4-5 ``z_p = Dropout(x_{i_p} / ||x_{i_p}|| + h_p)``;
* Eq. 6-7 soft-attention readout -> ``s``;
* Eq. 8-9 ``y = softmax(s X^T)`` over all items with the raw embedding table ``X`` (the padding item 0
  masked out), trained with softmax cross-entropy. Eq. 9 as printed adds a ``(1 - y) log(1 - y_hat)``
  term over softmax outputs; the text says "cross-entropy" and every baseline uses softmax CE, so this is
  plain CE.

Ablations (Table 2): ``use_session_graph: False`` is TASRec-temp (``z = Dropout(x_hat)``),
``use_temporal_graph: False`` is TASRec-base (``z = Dropout(h)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import Tensor, nn

from recbole_tasrec.data.temporal_graph import TemporalGraph
from recbole_tasrec.model.full_softmax import full_softmax_cross_entropy
from recbole_tasrec.model.graph_source import GraphSource
from recbole_tasrec.model.init import uniform_init_
from recbole_tasrec.model.readout import AttentionReadout
from recbole_tasrec.model.sampled_softmax import negative_sampler
from recbole_tasrec.model.session_graph import SessionGGNN, build_session_graphs
from recbole_tasrec.model.temporal_gcn import TemporalGCN, l2_normalize


class _ItemCount(NamedTuple):
    """The one thing RecBole's ``SequentialRecommender.__init__`` reads of a data set,
    ``dataset.num(ITEM_ID_FIELD)`` (recbole 1.2.1, ``model/abstract_recommender.py`` l.164), answered from
    the item tokens when a model is built without a data set (:meth:`TASRec.from_graph_source`)."""

    n_items: int

    def num(self, field: str) -> int:
        return self.n_items


class TASRec(SequentialRecommender):
    """TASRec as a RecBole sequential model; see the module docstring for the equations.

    Built like every RecBole model, ``TASRec(config, dataset)``, from a
    :class:`~recbole_tasrec.data.TASRecDataset` (its ``graph_source(config)`` gives every day's graph), or
    without a data set from a graph source and the item ids (:meth:`from_graph_source`, what serving
    does). Batches may mix days: each day present is scored with its own graph; the day-grouped training
    loader of :func:`~recbole_tasrec.run_recbole_tasrec` makes that one graph a batch.
    """

    input_type = InputType.POINTWISE
    day_grouped_batches = True  # run_recbole_tasrec gives this model one day per training batch
    fused_adam = True  # TASRecTrainer builds its Adam fused (recbole_tasrec.trainer.adam_options)

    def __init__(self, config: Any, dataset: Any) -> None:
        if not callable(getattr(dataset, "graph_source", None)):
            raise TypeError(
                "TASRec needs the day-indexed data set recbole_tasrec.data.TASRecDataset (build it with "
                "TASRecDataset(config), or run through recbole_tasrec.run_recbole_tasrec)"
            )
        tokens = dataset.field2id_token[dataset.iid_field]
        self._build(config, dataset, tokens, dataset.graph_source(config), dataset.n_train_days)

    @classmethod
    def from_graph_source(
        cls, config: Any, item_tokens: Sequence[str], graph_source: GraphSource, n_train_days: int | None = None
    ) -> TASRec:
        """A TASRec without a data set: ``item_tokens[i]`` is the raw id of item ``i`` (``0`` is padding), the
        graphs come from ``graph_source``; ``n_train_days`` is only needed by ``temporal_eval: frozen``."""
        model = cls.__new__(cls)
        model._build(config, _ItemCount(len(item_tokens)), item_tokens, graph_source, n_train_days)
        return model

    def _build(
        self, config: Any, dataset: Any, item_tokens: Any, graph_source: GraphSource, n_train_days: int | None
    ) -> None:
        super().__init__(config, dataset)
        if not isinstance(graph_source, GraphSource):
            raise TypeError(
                f"graph_source must provide propagation(day, device) and latest_graph(), got {graph_source!r}"
            )
        training_data = None if isinstance(dataset, _ItemCount) else dataset
        self.negative_sampler = negative_sampler(config, training_data, self.n_items, "TASRec")  # Eq. 9 or sampled
        self.embedding_size = int(config["embedding_size"])
        self.use_session_graph = bool(config["use_session_graph"])
        self.use_temporal_graph = bool(config["use_temporal_graph"])
        self.session_edge_weight = config["session_edge_weight"]
        self.temporal_eval = config["temporal_eval"]
        self.day_field = config["DAY_FIELD"] or "day"  # serving builds it from meta.json, which has no DAY_FIELD
        self.n_train_days = n_train_days
        self.graph_source = graph_source  # Eq. 1: the decayed temporal graph of every day
        # raw item ids, so that a checkpoint alone can serve recommendations (RecBole saves other_parameter)
        self.item_tokens = np.asarray(item_tokens)
        self.other_parameter_name = ["item_tokens"]

        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size, padding_idx=0)
        self.session_gnn = SessionGGNN(self.embedding_size, int(config["step"]))  # 2.1
        self.temporal_gcn = TemporalGCN(  # Eq. 2, 3
            self.embedding_size,
            int(config["n_layers"]),
            negative_slope=float(config["leaky_relu_slope"]),
            sparse_grad=True,  # see _lookup
            max_neighbors=config["max_neighbors"],  # None: every neighbour (the paper)
        )
        self.lazy_adam = bool(config["lazy_adam"])  # the trainer's LazyAdam; a sparse item-table gradient
        self.dropout = nn.Dropout(float(config["dropout_prob"]))  # Eq. 5
        self.readout = AttentionReadout(self.embedding_size)  # Eq. 6, 7
        self._day_tables: dict[int, tuple] = {}  # evaluation's per-day x / ||x|| of every item (temporal_table)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """SR-GNN's initialisation for every weight: ``U(-1/sqrt(d), 1/sqrt(d))``, except the padding row 0 of
        the item table, which starts at zero and stays there: no gradient reaches it (``padding_idx``, padded
        positions masked in the readout, its logit masked in Eq. 8), so neither Adam nor L2 moves it."""
        uniform_init_(self.parameters(), self.embedding_size)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    # --- the two views of a session, at the real positions -------------------------------------------
    # Both views and Eq. 5-7 work on the real positions only, packed row after row into (M, d) with
    # M = sum of the session lengths: padding never enters a computation (speed only).
    @staticmethod
    def real_positions(item_seq: Tensor, item_seq_len: Tensor) -> Tensor:
        """``(B, L)`` bool: the positions ``p < len`` of each session (``z`` has a row for each)."""
        positions = torch.arange(item_seq.size(1), device=item_seq.device)
        return positions.unsqueeze(0) < item_seq_len.to(item_seq.device).unsqueeze(1)

    def packed_positions(self, item_seq: Tensor, item_seq_len: Tensor) -> tuple[Tensor, Tensor]:
        """``(flat, session)``, ``(M,)`` each: every real position's index into the flattened ``(B, L)`` batch and
        its session, row after row (found once per batch: one ``nonzero``, every packed read an ``index_select``)."""
        flat = self.real_positions(item_seq, item_seq_len).reshape(-1).nonzero().squeeze(1)
        return flat, flat // item_seq.size(1)

    def session_states(
        self, item_seq: Tensor, item_seq_len: Tensor, positions: tuple[Tensor, Tensor] | None = None
    ) -> Tensor:
        """2.1: ``h_p`` at every real position, ``(M, d)`` (``positions``: :meth:`packed_positions`, if known)."""
        flat, session = positions or self.packed_positions(item_seq, item_seq_len)
        dtype = self.item_embedding.weight.dtype  # so that model.double() works
        graphs = build_session_graphs(item_seq, item_seq_len, self.session_edge_weight, dtype=dtype)
        hidden = self.session_gnn(graphs.a_in, graphs.a_out, self._lookup(graphs.nodes), graphs.node_mask)
        node = graphs.alias.reshape(-1).index_select(0, flat) + session * hidden.size(1)
        return hidden.flatten(0, 1).index_select(0, node)

    def _lookup(self, items: Tensor) -> Tensor:
        """Embedding rows with a sparse gradient (so is the GCN's, ``sparse_grad``): the output layer's dense
        gradient (Eq. 8) absorbs them in place, instead of two more table-sized zero-fills and additions a
        step. ``.grad`` ends dense, which is also what DDP sees (speed only)."""
        return F.embedding(items, self.item_embedding.weight, padding_idx=0, sparse=True)

    def graph_day(self, day: Tensor) -> Tensor:
        """The day whose graph scores each sample: its own, or with ``temporal_eval: frozen`` at evaluation
        time, at most the first test day (the graph stops at the end of training)."""
        if self.training or self.temporal_eval == "streaming" or self.n_train_days is None:
            return day
        return day.clamp(max=self.n_train_days)

    def temporal_states(self, items: Tensor, day: Tensor) -> Tensor:
        """Eq. 2-4: ``x_i / ||x_i||`` for each item of ``items`` (any shape) on the graph ``E_t`` of its day
        (``day``, the same shape), ``items.shape + (d,)``."""
        graph_day = self.graph_day(day)
        days = torch.unique(graph_day)
        if len(days) == 1:  # the day-grouped fast path
            return self._normalized_x(int(days[0]), items)
        # a batch from RecBole's own loader: one GCN per day present
        x = items.new_zeros(items.shape + (self.embedding_size,), dtype=self.item_embedding.weight.dtype)
        for t in days.tolist():
            rows = graph_day == t
            x[rows] = self._normalized_x(t, items[rows])
        return x

    def _normalized_x(self, t: int, items: Tensor) -> Tensor:
        """Eq. 2-4 on day ``t``'s graph, for ``items``: with gradients the GCN of their neighbourhoods, without
        (evaluation, serving) rows of :meth:`temporal_table`."""
        if torch.is_grad_enabled():
            return l2_normalize(self.temporal_gcn(self.item_embedding.weight, self._propagation(t), items))
        return self.temporal_table(t)[items]

    def temporal_table(self, t: int) -> Tensor:
        """Eq. 2-4 for every item, ``x / ||x||`` on day ``t``'s graph, ``(n_items, d)``, without gradients: computed
        once per day, graph and weights, so that the batches of a day share it (the last two days kept)."""
        propagation = self._propagation(t)
        tables = self._day_tables
        cached = tables.get(t)
        if cached is None or cached[0] is not propagation:
            tables.pop(t, None)
            while len(tables) >= 2:
                tables.pop(next(iter(tables)))
            with torch.no_grad():
                table = l2_normalize(self.temporal_gcn.full_table(self.item_embedding.weight, propagation))
            cached = tables[t] = (propagation, table)
        return cached[1]

    def invalidate_day_tables(self) -> None:
        """Forget evaluation's per-day tables (:meth:`temporal_table`). Done whenever the weights may change: a
        switch of mode (training switches before and after its steps), loading a state, moving or casting the
        model. Call it after editing the weights in place by hand."""
        self.__dict__.get("_day_tables", {}).clear()

    def __getstate__(self) -> dict[str, Any]:
        """The model to copy or pickle, without evaluation's per-day tables: a cache, holding the day's sparse
        propagation matrix, which ``copy.deepcopy`` cannot copy (serving copies a model it trains on a day)."""
        return {**self.__dict__, "_day_tables": {}}

    def train(self, mode: bool = True) -> TASRec:
        self.invalidate_day_tables()
        return super().train(mode)

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> TASRec:
        self.invalidate_day_tables()
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self.invalidate_day_tables()
        super()._load_from_state_dict(*args, **kwargs)

    def _propagation(self, t: int) -> Tensor:
        return self.graph_source.propagation(t, device=self.item_embedding.weight.device)

    # --- Eq. 5-7 ---------------------------------------------------------------------------------------
    def forward(self, item_seq: Tensor, item_seq_len: Tensor, day: Tensor) -> Tensor:
        """The session representation ``s`` (Eq. 7), ``(B, d)``."""
        flat, session = positions = self.packed_positions(item_seq, item_seq_len)
        z = 0
        if self.use_session_graph:
            z = z + self.session_states(item_seq, item_seq_len, positions)
        if self.use_temporal_graph:
            z = z + self.temporal_states(item_seq.reshape(-1).index_select(0, flat), day.index_select(0, session))
        z = self.dropout(z)  # Eq. 5 (z holds the real positions only)
        last = z.index_select(0, item_seq_len.cumsum(0) - 1)  # z_l of each session
        return self.readout.packed(z, session, last)  # Eq. 6, 7

    def _session_vectors(self, interaction: Any) -> Tensor:
        day = interaction[self.day_field].long()
        return self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], day)

    # --- Eq. 8-9 and RecBole's interface ---------------------------------------------------------------
    def _logits(self, interaction: Any) -> Tensor:
        """Eq. 8's ``s X^T`` over all items; the padding item 0 gets ``-inf``, so it never competes in the
        softmax nor ranks (RecBole's evaluation masks it too, but not a caller of ``full_sort_predict``)."""
        logits = self._session_vectors(interaction) @ self.item_embedding.weight.t()
        logits[:, 0] = float("-inf")  # in place, no copy of the (B, n_items) scores: autograd keeps no product
        return logits

    def calculate_loss(self, interaction: Any) -> Tensor:
        """Eq. 8-9: the same as ``cross_entropy(self._logits(...), target)``, in one buffer (speed only); with
        ``loss_type: sampled``, Eq. 9 against shared popularity-drawn negatives (``model/sampled_softmax.py``).
        A model built without training data (:meth:`from_graph_source`) trains with the full softmax."""
        session = self._session_vectors(interaction)
        if self.negative_sampler is not None:
            target, table = interaction[self.POS_ITEM_ID], self.item_embedding.weight
            return self.negative_sampler.loss(session, table, target, sparse=self.lazy_adam)  # lazy: rows only
        return full_softmax_cross_entropy(session, self.item_embedding.weight, interaction[self.POS_ITEM_ID])

    def predict(self, interaction: Any) -> Tensor:
        s = self._session_vectors(interaction)
        return (s * self.item_embedding(interaction[self.ITEM_ID])).sum(-1)

    def full_sort_predict(self, interaction: Any) -> Tensor:
        return self._logits(interaction)

    def full_sort_factors(self, interaction: Any) -> tuple[Tensor, Tensor]:
        """``(s, X)`` with ``full_sort_predict = s X^T`` (padding aside): chunked evaluation scores item blocks."""
        return self._session_vectors(interaction), self.item_embedding.weight

    # --- a self-contained checkpoint ------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        """The temporal graph after every known day (what scoring the next day needs) goes into
        ``state_dict``, so a checkpoint can serve without the training data (:meth:`saved_graph`)."""
        return {"graph": self.graph_source.latest_graph().state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Nothing to restore: a model's graphs come from its graph source; the saved graph is read before
        the model is built, by whoever has no data set (:meth:`saved_graph`)."""

    @staticmethod
    def saved_graph(state_dict: dict[str, Any]) -> TemporalGraph:
        """The graph a TASRec ``state_dict`` (a checkpoint's ``"state_dict"``) carries: the one after the last
        day its model knew."""
        try:
            state = state_dict["_extra_state"]["graph"]
        except (KeyError, TypeError):
            raise ValueError("this state_dict holds no temporal graph: it was not saved by a TASRec model") from None
        return TemporalGraph.from_state_dict(state)
