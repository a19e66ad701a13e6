r"""LESSR: Lossless Edge-order preserving aggregation and Shortcut graph attention for Session-based Recommendation.

Reference:
    Tianwen Chen and Raymond Chi-Wing Wong. "Handling Information Loss of Graph Neural Networks for Session-based
    Recommendation." KDD 2020. Authors' code (DGL): https://github.com/twchen/lessr

Equations (the paper's model section; layers in :mod:`recbole_tasrec.model.lessr_layers`, graphs in
:mod:`recbole_tasrec.model.lessr_graphs`):

* ``x^0_v = e_v``, the item embedding of node ``v`` (rows renormalised to norm <= 1, the code's ``max_norm=1``);
* layer ``l = 1..L`` is an EOPA layer on the EOP multigraph for odd ``l`` and an SGAT layer on the shortcut graph
  for even ``l`` (EOPA, SGAT, EOPA, ... as in the paper and its code), with dense connections: layer ``l`` reads
  ``[x^{l-1} || ... || x^0]`` and adds its ``d``-dimensional output in front of it;
* readout: ``s_g = W_out sum_v beta_v x_v`` with ``beta = softmax_v(p^T sigmoid(W_u x_v + W_l x_last + r))``;
* session vector: ``s = W_s Dropout(BN([x_last || s_g]))``;
* prediction: ``y = softmax(s E^T)`` over all items, trained with cross-entropy.

Where this departs from the paper, and why:

* batch normalisation at the input of every layer, of the readout and of ``[x_last || s_g]``, and dropout
  (``dropout_prob``) on the aggregated features, follow the authors' code (the paper does not print them); batch
  norm statistics run over the batch's real nodes only, never padding;
* graphs are built for the whole padded batch with tensor operations (no DGL); the EOPA GRU runs once over every
  node's padded, ordered message list, which gives the same state as DGL's degree buckets;
* weight decay (``weight_decay``, AdamW as in the authors' code) applies to every parameter, where the authors'
  code exempts biases and batch-norm weights (RecBole's optimiser has one decay for all).
"""

from __future__ import annotations

from typing import Any

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import Tensor, nn

from recbole_tasrec.model.lessr_graphs import build_lessr_graphs
from recbole_tasrec.model.lessr_layers import EOPA, SGAT, LESSRReadout, MaskedBatchNorm
from recbole_tasrec.model.sampled_softmax import negative_sampler


class LESSR(SequentialRecommender):
    """LESSR as a RecBole sequential model; see the module docstring for the equations.

    Needs only ``item_id_list`` and ``item_length`` from a batch, so it runs on any sequential data set.
    """

    input_type = InputType.POINTWISE

    def __init__(self, config: Any, dataset: Any) -> None:
        super().__init__(config, dataset)
        self.negative_sampler = negative_sampler(config, dataset, self.n_items, "LESSR")  # None: full softmax
        self.embedding_size = int(config["embedding_size"])
        self.num_layers = int(config["num_layers"])
        if self.embedding_size < 1 or self.num_layers < 1:
            raise ValueError(
                f"LESSR needs embedding_size >= 1 and num_layers >= 1, got {self.embedding_size}, {self.num_layers}"
            )
        max_norm = config["embedding_max_norm"]
        self.embedding_max_norm = float(max_norm) if max_norm is not None else None
        dropout = float(config["dropout_prob"])
        d = self.embedding_size

        self.item_embedding = nn.Embedding(self.n_items, d, padding_idx=0)
        self.layers = nn.ModuleList(
            EOPA((i + 1) * d, d, dropout) if i % 2 == 0 else SGAT((i + 1) * d, d, d, dropout)
            for i in range(self.num_layers)
        )
        width = (self.num_layers + 1) * d  # the densely connected node features
        self.readout = LESSRReadout(width, d, d, dropout)
        self.batch_norm = MaskedBatchNorm(width + d)
        self.feat_drop = nn.Dropout(dropout)
        self.fc_sr = nn.Linear(width + d, d, bias=False)
        self.loss_fct = nn.CrossEntropyLoss()

    def item_vectors(self) -> Tensor:
        """The embedding table with every row renormalised to norm ``<= embedding_max_norm`` in place, exactly what
        ``nn.Embedding(max_norm=1)`` does to the rows the authors' code looks up (all of them, for the scores)."""
        weight = self.item_embedding.weight
        if self.embedding_max_norm is not None:
            with torch.no_grad():
                norms = weight.norm(dim=1, keepdim=True)
                weight.mul_(torch.clamp(self.embedding_max_norm / (norms + 1e-7), max=1.0))
        return weight

    def forward(self, item_seq: Tensor, item_seq_len: Tensor) -> Tensor:
        """The session vector ``s``, ``(B, d)``."""
        embeddings = self.item_vectors()
        graphs = build_lessr_graphs(item_seq, item_seq_len)
        feat = embeddings[graphs.nodes] * graphs.node_mask.unsqueeze(-1)
        for i, layer in enumerate(self.layers):
            if i % 2 == 0:
                out = layer(feat, graphs.node_mask, graphs.in_messages, graphs.in_degree)
            else:
                out = layer(feat, graphs.node_mask, graphs.shortcut)
            feat = torch.cat([out, feat], dim=-1)  # dense connection: the newest output first, as in the code
        last = feat[torch.arange(feat.size(0), device=feat.device), graphs.last]
        s = torch.cat([last, self.readout(feat, graphs.node_mask, graphs.last)], dim=-1)
        return self.fc_sr(self.feat_drop(self.batch_norm(s)))

    def _scores(self, interaction: Any) -> Tensor:
        s = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return s @ self.item_embedding.weight.t()  # s E^T

    def calculate_loss(self, interaction: Any) -> Tensor:
        """Softmax cross-entropy over every item, or against sampled negatives (``loss_type: sampled``)."""
        if self.negative_sampler is None:
            return self.loss_fct(self._scores(interaction), interaction[self.POS_ITEM_ID])
        s = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return self.negative_sampler.loss(s, self.item_embedding.weight, interaction[self.POS_ITEM_ID])

    def predict(self, interaction: Any) -> Tensor:
        s = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return (s * self.item_embedding(interaction[self.ITEM_ID])).sum(-1)

    def full_sort_predict(self, interaction: Any) -> Tensor:
        return self._scores(interaction)

    def full_sort_factors(self, interaction: Any) -> tuple[Tensor, Tensor]:
        """``(s, E)`` with ``full_sort_predict = s E^T``: chunked evaluation scores item blocks."""
        return self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]), self.item_embedding.weight
