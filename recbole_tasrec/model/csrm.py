r"""CSRM: Collaborative Session-based Recommendation Machine, with parallel inner and outer memory modules.

Reference:
    Meirui Wang, Pengjie Ren, Lei Mei, Zhumin Chen, Jun Ma, Maarten de Rijke. "A Collaborative Session-based
    Recommendation Approach with Parallel Memory Modules." SIGIR 2019.
    Authors' code (TensorFlow 1): https://github.com/wmeirui/CSRM_SIGIR2019

Equations (the paper's model section), for a session ``x_1..x_t`` with embeddings ``e_j``:

* inner memory encoder (IME, NARM's two encoders): a global GRU gives ``c^g = h^g_t``; a local GRU gives
  ``h_1..h_t`` and ``c^l = sum_j alpha_j h_j`` with ``alpha = softmax_j(v^T sigmoid(A_1 h_t + A_2 h_j))``;
  ``c^{inner} = [c^l || c^g]``;
* outer memory encoder (OME, :class:`~recbole_tasrec.model.session_memory.OuterMemory`): the ``memory_size`` most
  recent session representations ``m_i`` (``c^l`` of earlier samples); ``c^o = sum_{i in top k} w_i m_i`` with
  ``w = softmax(top_k cos(c^l, m_i))``; ``c^{outer} = [c^o || c^o]``;
* fusion gate: ``f = sigmoid(w_l^T c^l + w_o^T c^o + w_g^T c^g)``, ``c = f c^{inner} + (1 - f) c^{outer}``;
* bilinear decoder: ``S_i = e_i^T B Dropout(c)`` for every item, softmax cross-entropy.

How the memory is written, and departures from the paper (which leaves these open), following the authors' code
unless said otherwise:

* training: each training batch's ``c^l`` (detached) is appended after the batch is scored, so the next batch
  reads it; reads use every filled slot. The memory is never reset (the code resets it at each epoch; here the
  FIFO replaces stale rows within ``memory_size / batch`` batches anyway);
* evaluation, ``memory_eval: streaming`` (default): a sample of day ``t`` reads only rows written by samples of
  days ``< t``; each evaluated batch is written after it is read, and becomes readable once the evaluation reaches
  a later day, so the memory advances through the validation and test days like TASRec's graph and nothing of
  day ``t`` (or later) reaches a sample of day ``t``. The code writes each batch straight away, which lets a
  session read other sessions' later clicks;
* evaluation, ``memory_eval: frozen``: read-only (rows of days ``< t`` only), the memory stays as training left it;
* the memory is a set of buffers: every checkpoint carries it (as the best epoch's evaluation left it);
* ``c^l``, ``c^g`` and ``c^o`` are standardised per row (zero mean, unit variance over features) before the gate,
  the gate is one scalar per session and the memory holds ``c^l``: all three as in the code (the paper does not
  say); the two GRUs are separate, as in the code;
* defaults (``properties/model/CSRM.yaml``) are the code's: it keeps the last 10,000 representations and reads the
  512 most similar (``memory_size: 10000``, ``k: 512``), ``d = H = 150``, dropout 0.25 / 0.5, lr 5e-4, batch 512.
"""

from __future__ import annotations

from typing import Any

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import Tensor, nn
from torch.nn.init import constant_, xavier_normal_

from recbole_tasrec.model.sampled_softmax import negative_sampler
from recbole_tasrec.model.session_memory import OuterMemory

MEMORY_EVAL_MODES = ("streaming", "frozen")


def standardize(x: Tensor, eps: float = 1e-10) -> Tensor:
    """Zero mean, unit variance over the last dimension, without learned scale (the authors' ``tf.nn.moments``)."""
    mean = x.mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps)


class CSRM(SequentialRecommender):
    """CSRM as a RecBole sequential model; see the module docstring for the equations and the memory's updates.

    The data set must carry each sample's day (:class:`~recbole_tasrec.data.TASRecDataset`, as every run through
    :func:`~recbole_tasrec.run_recbole_tasrec` has): the streaming memory reads only earlier days.
    """

    input_type = InputType.POINTWISE

    def __init__(self, config: Any, dataset: Any) -> None:
        super().__init__(config, dataset)
        if not hasattr(dataset, "day_field"):
            raise TypeError(
                "CSRM needs the day-indexed data set recbole_tasrec.data.TASRecDataset (run it through "
                "recbole_tasrec.run_recbole_tasrec)"
            )
        self.negative_sampler = negative_sampler(config, dataset, self.n_items, "CSRM")  # None: full softmax
        self.memory_eval = config["memory_eval"]  # checked with the other settings (recbole_tasrec.settings)
        dropout = list(config["dropout_probs"])
        if len(dropout) != 2:
            raise ValueError(f"dropout_probs must be two rates [embedding, representation], got {dropout}")
        self.day_field = dataset.day_field
        d, h = int(config["embedding_size"]), int(config["hidden_size"])

        self.item_embedding = nn.Embedding(self.n_items, d, padding_idx=0)
        self.emb_dropout = nn.Dropout(float(dropout[0]))
        self.global_gru = nn.GRU(d, h, batch_first=True)
        self.local_gru = nn.GRU(d, h, batch_first=True)
        self.a_1 = nn.Linear(h, h, bias=False)  # A_1, on the last local state
        self.a_2 = nn.Linear(h, h, bias=False)  # A_2, on each local state
        self.v_t = nn.Linear(h, 1, bias=False)
        self.memory = OuterMemory(int(config["memory_size"]), h, int(config["k"]))
        self.gate = nn.Linear(3 * h, 1, bias=False)  # [w_l; w_o; w_g]
        self.repr_dropout = nn.Dropout(float(dropout[1]))
        self.bilinear = nn.Linear(2 * h, d, bias=False)  # B
        self.loss_fct = nn.CrossEntropyLoss()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """RecBole NARM's initialisation (Xavier normal, zero biases); GRUs keep torch's."""
        if isinstance(module, (nn.Embedding, nn.Linear)):
            xavier_normal_(module.weight.data)
            if getattr(module, "bias", None) is not None:
                constant_(module.bias.data, 0)

    def inner_encoder(self, item_seq: Tensor, item_seq_len: Tensor) -> tuple[Tensor, Tensor]:
        """IME: ``(c^l, c^g)``, each ``(B, H)``; positions at or after the length never count."""
        emb = self.emb_dropout(self.item_embedding(item_seq))
        last = (item_seq_len - 1).long()
        global_out, _ = self.global_gru(emb)
        local_out, _ = self.local_gru(emb)
        c_global = self.gather_indexes(global_out, last)
        h_t = self.gather_indexes(local_out, last)
        mask = torch.arange(item_seq.size(1), device=item_seq.device).unsqueeze(0) < item_seq_len.unsqueeze(1)
        e = self.v_t(torch.sigmoid(self.a_1(h_t).unsqueeze(1) + self.a_2(local_out))).squeeze(-1)
        alpha = torch.softmax(e.masked_fill(~mask, torch.finfo(e.dtype).min), dim=1)
        c_local = (alpha.unsqueeze(-1) * local_out).sum(1)
        return c_local, c_global

    def forward(self, item_seq: Tensor, item_seq_len: Tensor, day: Tensor) -> Tensor:
        """The fused representation ``c`` (before the decoder's dropout), ``(B, 2H)``; reads and writes the memory."""
        c_local, c_global = self.inner_encoder(item_seq, item_seq_len)
        c_outer = self._read_and_write(c_local, day)
        c_local, c_global, c_outer = standardize(c_local), standardize(c_global), standardize(c_outer)
        f = torch.sigmoid(self.gate(torch.cat([c_local, c_outer, c_global], dim=-1)))
        return f * torch.cat([c_local, c_global], dim=-1) + (1 - f) * torch.cat([c_outer, c_outer], dim=-1)

    def _read_and_write(self, c_local: Tensor, day: Tensor) -> Tensor:
        """OME: read the neighbours of each session, then write the batch (see the module docstring)."""
        if self.training:
            c_outer = self.memory.read(c_local, self.memory.readable_in_training(c_local.size(0)))
            self.memory.write(c_local, day)
            return c_outer
        if self.memory_eval == "streaming":
            self.memory.commit_before(day.max())
        c_outer = self.memory.read(c_local, self.memory.readable_before(day))
        if self.memory_eval == "streaming":
            self.memory.stage(c_local, day)
        return c_outer

    def _session_vectors(self, interaction: Any) -> Tensor:
        day = interaction[self.day_field].long()
        c = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], day)
        return self.bilinear(self.repr_dropout(c))

    def calculate_loss(self, interaction: Any) -> Tensor:
        """Softmax cross-entropy over every item, or against sampled negatives (``loss_type: sampled``)."""
        session, target = self._session_vectors(interaction), interaction[self.POS_ITEM_ID]
        if self.negative_sampler is not None:
            return self.negative_sampler.loss(session, self.item_embedding.weight, target)
        return self.loss_fct(session @ self.item_embedding.weight.t(), target)

    def predict(self, interaction: Any) -> Tensor:
        return (self._session_vectors(interaction) * self.item_embedding(interaction[self.ITEM_ID])).sum(-1)

    def full_sort_predict(self, interaction: Any) -> Tensor:
        return self._session_vectors(interaction) @ self.item_embedding.weight.t()

    def full_sort_factors(self, interaction: Any) -> tuple[Tensor, Tensor]:
        """``(s, E)`` with ``full_sort_predict = s E^T``: chunked evaluation scores item blocks."""
        return self._session_vectors(interaction), self.item_embedding.weight
