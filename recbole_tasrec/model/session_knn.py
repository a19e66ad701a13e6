"""What SKNN, V-SKNN and STAN share: the index of past sessions, the neighbour search, the scoring pass, and the
RecBole model they all are.

The index is a sparse session x item matrix of every kept session (all splits), each entry the item's last
1-based position in its session. A batch is scored in five vectorised steps, none of which loops over sessions:

1. candidates: the sessions sharing an item with the current session, and the dot product of the current
   session's weighted item vector with their binary vectors, in one sparse product ``Q M^T``;
2. only sessions the sample may know (``knn_streaming``: every session of a day before the sample's day; else the
   training split), and of those the ``sample_size`` most recent by their last click (session-rec's
   ``sampling='recent'`` on its ``session_time``; ties: the later start);
3. the model's similarity, and the ``k`` most similar per sample;
4. each kept neighbour expanded to its items (the rows of ``M``), weighted by the model;
5. one scatter-add into the ``(batch, n_items)`` score matrix.

A subclass of :class:`NeighbourScoring` gives the current session's item weights, the similarity and the
per-item weights; :class:`SessionKNN` is the RecBole side (no gradient training, like RecBole's ``Pop``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import Tensor, nn

from recbole_tasrec.data.clicks import DayClicks
from recbole_tasrec.data.dataset import TRAIN


def _last_per_key(key: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Indices of the entry with the largest ``position`` for each distinct ``key``, in key order."""
    order = np.lexsort((position, key))
    last = np.ones(len(order), dtype=bool)
    last[:-1] = key[order][1:] != key[order][:-1]
    return order[last]


def check_choice(key: str, value: str, choices: dict[str, Any]) -> str:
    """``value`` if it names one of ``choices``, else a ``ValueError`` naming ``key``."""
    if value not in choices:
        raise ValueError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
    return value


def rank_in_row(rows: np.ndarray, n_rows: int) -> np.ndarray:
    """0-based rank of each entry within its row, for ``rows`` sorted ascending."""
    counts = np.bincount(rows, minlength=n_rows)
    return np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)


def top_per_row(rows: np.ndarray, rank: np.ndarray, values: np.ndarray, n_rows: int, limit: int) -> np.ndarray:
    """Indices of the ``limit`` largest ``values`` of each row, ties to the lower ``rank`` (its place in the row).

    One stable sort of a dense ``(n_rows, max row length)`` matrix instead of a sort of all the entries with
    the row as a key: rows here hold at most ``sample_size`` entries.
    """
    width = int(rank.max()) + 1 if len(rank) else 1
    dense = torch.full((n_rows, width), -torch.inf, dtype=torch.float64)
    dense[rows, rank] = torch.from_numpy(np.asarray(values, dtype=np.float64))
    entry = torch.zeros((n_rows, width), dtype=torch.int64)
    entry[rows, rank] = torch.arange(len(rows))
    best = torch.sort(dense, dim=1, descending=True, stable=True)
    top = best.indices[:, :limit]
    kept = best.values[:, :limit] > -torch.inf
    return entry.gather(1, top)[kept].numpy()


@dataclass(frozen=True)
class SessionIndex:
    """Every session of the data set as a sparse row of item positions, with its day, split and start rank."""

    positions: sp.csr_matrix  # (n_sessions, n_items): last 1-based position of the item in the session
    day: np.ndarray  # (n_sessions,) day of the session's first click (-1: no such session id)
    split: np.ndarray  # (n_sessions,) 0 train, 1 valid, 2 test (-1: no such session id)
    start_rank: np.ndarray  # (n_sessions,) order of the session's first click in the data: larger is more recent
    size: np.ndarray  # (n_sessions,) distinct items of the session
    last_time: np.ndarray  # (n_sessions,) Unix seconds of the session's last click (session-rec's session_time)
    train_clicks: np.ndarray  # (n_items,) clicks on each item in the training split (session-rec's IDF counts)

    @classmethod
    def from_clicks(
        cls,
        clicks: DayClicks,
        session_day: np.ndarray,
        session_split: np.ndarray,
        session_last_time: np.ndarray,
        n_items: int,
    ) -> SessionIndex:
        """Build from a data set's clicks (grouped by session, in time order within each session)."""
        session, item = clicks.session, clicks.item
        split = np.asarray(session_split)
        n_sessions = len(session_day)
        row = np.arange(len(session))
        is_first = np.ones(len(session), dtype=bool)
        is_first[1:] = session[1:] != session[:-1]
        first = np.maximum.accumulate(np.where(is_first, row, 0))
        position = row - first + 1
        keep = _last_per_key(session * n_items + item, position)
        positions = sp.csr_matrix(
            (position[keep].astype(np.float64), (session[keep], item[keep])), shape=(n_sessions, n_items)
        )
        start_rank = np.full(n_sessions, -1, dtype=np.int64)
        start_rank[session[is_first]] = row[is_first]
        size = np.diff(positions.indptr)
        train_clicks = np.bincount(item[split[session] == TRAIN], minlength=n_items)
        last_time = np.asarray(session_last_time, np.float64)
        return cls(positions, np.asarray(session_day, np.int64), split, start_rank, size, last_time, train_clicks)

    @classmethod
    def from_dataset(cls, dataset: Any) -> SessionIndex:
        """From a :class:`~recbole_tasrec.data.TASRecDataset` (any of its split copies)."""
        if not hasattr(dataset, "day_clicks"):
            raise TypeError(
                "session kNN models need the day-indexed data set recbole_tasrec.data.TASRecDataset (build it with "
                "TASRecDataset(config), or run through recbole_tasrec.run_recbole_tasrec)"
            )
        if not hasattr(dataset, "session_last_time"):
            raise TypeError(
                "this data set was saved by an older version without each session's last click time: delete the "
                "saved data set (dataset_save_path, or <checkpoint_dir>/<dataset>-TASRecDataset.pth) to rebuild it"
            )
        n_items = dataset.num(dataset.iid_field)
        return cls.from_clicks(
            dataset.day_clicks, dataset.session_day, dataset.session_split, dataset.session_last_time, n_items
        )


@dataclass(frozen=True)
class CurrentSessions:
    """A batch of current sessions as (row, item, last 1-based position) triples, one per distinct item."""

    row: np.ndarray
    item: np.ndarray
    position: np.ndarray
    length: np.ndarray  # (B,) clicks in the session (the prefix the model sees)
    size: np.ndarray  # (B,) distinct items
    day: np.ndarray  # (B,) the sample's day
    time: np.ndarray  # (B,) Unix seconds of the session's last click so far

    @classmethod
    def from_batch(
        cls, item_seq: np.ndarray, lengths: np.ndarray, n_items: int, day: np.ndarray, time: np.ndarray
    ) -> CurrentSessions:
        """From RecBole's left-aligned, zero-padded ``item_seq`` ``(B, L)`` and ``item_seq_len`` ``(B,)``, with
        each sample's day and the time of its last click."""
        batch, width = item_seq.shape
        position = np.broadcast_to(np.arange(1, width + 1), (batch, width))
        valid = position <= lengths[:, None]
        row = np.broadcast_to(np.arange(batch)[:, None], (batch, width))[valid]
        item, position = item_seq[valid], position[valid]
        keep = _last_per_key(row * n_items + item, position)
        size = np.bincount(row[keep], minlength=batch)
        return cls(row[keep], item[keep], position[keep], lengths.astype(np.int64), size, day, time)


@dataclass(frozen=True)
class Neighbours:
    """Kept (sample, neighbour session) pairs with their similarity."""

    row: np.ndarray
    session: np.ndarray
    similarity: np.ndarray


@dataclass(frozen=True)
class NeighbourItems:
    """Each kept neighbour's items: ``pair`` indexes :class:`Neighbours`, ``position`` is the item's in the
    neighbour, ``query_position`` its last position in the current session (0: not in it)."""

    pair: np.ndarray
    item: np.ndarray
    position: np.ndarray
    query_position: np.ndarray

    def per_pair_max(self, values: np.ndarray, n_pairs: int) -> np.ndarray:
        """The largest of ``values`` (one per neighbour item, ``>= 0``) over each pair's items."""
        best = np.zeros(n_pairs, dtype=np.float64)
        if len(self.pair):  # pairs are contiguous runs (one per neighbour): one reduceat
            starts = np.flatnonzero(np.r_[True, self.pair[1:] != self.pair[:-1]])
            best[self.pair[starts]] = np.maximum.reduceat(np.asarray(values, np.float64), starts)
        return best

    def latest_shared_query_position(self, n_pairs: int) -> np.ndarray:
        """Per pair, the last position in the current session of an item the neighbour holds."""
        return self.per_pair_max(self.query_position, n_pairs)

    def last_shared_position(self, n_pairs: int) -> np.ndarray:
        """Per pair, the last position in the neighbour of an item the current session holds."""
        return self.per_pair_max(np.where(self.query_position > 0, self.position, 0), n_pairs)

    def reference_position(self, n_pairs: int) -> np.ndarray:
        """Per pair, the position in the neighbour of the most recent current-session item it shares (the STAN
        paper's ``p(inn(s, n), n)``)."""
        latest = self.latest_shared_query_position(n_pairs)[self.pair]
        is_ref = (self.query_position == latest) & (self.query_position > 0)
        return self.per_pair_max(np.where(is_ref, self.position, 0), n_pairs)


class NeighbourScoring:
    """The scoring pass of the module docstring; subclasses define the three weights."""

    def __init__(self, index: SessionIndex, k: int, sample_size: int, streaming: bool) -> None:
        for name, value in (("k", k), ("sample_size", sample_size)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive integer (a number of sessions), got {value!r}")
        self.index, self.k, self.sample_size, self.streaming = index, int(k), int(sample_size), bool(streaming)
        self.n_items = index.positions.shape[1]
        # columns from the most recently ended session to the oldest (ties: the later start), so each row of a
        # product is in recency order; sessions that do not exist (no clicks, NaN time) go last
        self.by_recency = np.lexsort((-index.start_rank, -index.last_time))
        members = (index.positions[self.by_recency] > 0).astype(np.float64)
        self.members_t = members.T.tocsr()  # (n_items, n_sessions), binary

    # --- the model's weights -------------------------------------------------------------------------------
    def query_weights(self, current: CurrentSessions) -> np.ndarray:
        """Weight of each current-session item in the similarity (default: 1, a binary vector)."""
        return np.ones(len(current.item))

    def similarity(
        self, current: CurrentSessions, rows: np.ndarray, sessions: np.ndarray, dot: np.ndarray
    ) -> np.ndarray:
        """Similarity of each candidate pair from the weighted dot product (default: cosine)."""
        return dot / np.sqrt(current.size[rows] * self.index.size[sessions])

    def item_weights(
        self, current: CurrentSessions, neighbours: Neighbours, items: NeighbourItems
    ) -> np.ndarray | None:
        """Per neighbour item, a factor on the neighbour's similarity (default: none)."""
        return None

    # --- the pass ------------------------------------------------------------------------------------------
    def known(self, current: CurrentSessions, rows: np.ndarray, sessions: np.ndarray) -> np.ndarray:
        """Mask of the pairs whose session the sample may know: a finished day (streaming), else training."""
        if self.streaming:
            return self.index.day[sessions] < current.day[rows]
        return self.index.split[sessions] == TRAIN

    def neighbours(self, current: CurrentSessions) -> Neighbours:
        """Steps 1-3: candidates, the recent sample of the known ones, the ``k`` most similar."""
        batch = len(current.length)
        query = sp.csr_matrix((self.query_weights(current), (current.row, current.item)), shape=(batch, self.n_items))
        product = (query @ self.members_t).tocsr()
        product.sort_indices()  # each row: most recent first
        rows = np.repeat(np.arange(batch), np.diff(product.indptr))
        sessions, dot = self.by_recency[product.indices], product.data
        keep = self.known(current, rows, sessions)
        rows, sessions, dot = rows[keep], sessions[keep], dot[keep]
        rank = rank_in_row(rows, batch)
        keep = rank < self.sample_size  # session-rec's 'recent' sampling
        rows, sessions, dot, rank = rows[keep], sessions[keep], dot[keep], rank[keep]
        similarity = self.similarity(current, rows, sessions, dot)
        keep = np.sort(top_per_row(rows, rank, similarity, batch, self.k))  # ties: the more recent session
        return Neighbours(rows[keep], sessions[keep], similarity[keep])

    def neighbour_items(self, current: CurrentSessions, neighbours: Neighbours) -> NeighbourItems:
        """Step 4: every item of every kept neighbour, with its positions in the neighbour and the query."""
        indptr = self.index.positions.indptr
        counts = indptr[neighbours.session + 1] - indptr[neighbours.session]
        pair = np.repeat(np.arange(len(counts)), counts)
        offset = np.arange(len(pair)) - np.repeat(np.cumsum(counts) - counts, counts)
        at = indptr[neighbours.session][pair] + offset
        item = self.index.positions.indices[at].astype(np.int64)
        query_keys = current.row * self.n_items + current.item  # sorted: CurrentSessions is in key order
        keys = neighbours.row[pair] * self.n_items + item
        loc = np.minimum(np.searchsorted(query_keys, keys), len(query_keys) - 1)
        query_position = np.where(query_keys[loc] == keys, current.position[loc], 0)
        return NeighbourItems(pair, item, self.index.positions.data[at], query_position)

    def scores(self, item_seq: Tensor, lengths: Tensor, day: Tensor, time: Tensor) -> Tensor:
        """``(B, n_items)`` scores of a batch: ``sum_n sim(s, n) * weight(i | s, n) * 1_n(i)`` (step 5); ``day``
        is each sample's day, ``time`` the Unix seconds of its session's last click so far."""
        seq, length = item_seq.cpu().numpy().astype(np.int64), lengths.cpu().numpy().astype(np.int64)
        if len(length) and (length.min() < 1 or length.max() > seq.shape[1]):
            raise ValueError(f"item_seq_len must lie in 1..{seq.shape[1]}, got {length.min()}..{length.max()}")
        day_np, time_np = day.cpu().numpy().astype(np.int64), time.cpu().numpy().astype(np.float64)
        current = CurrentSessions.from_batch(seq, length, self.n_items, day_np, time_np)
        neighbours = self.neighbours(current)
        items = self.neighbour_items(current, neighbours)
        value = neighbours.similarity[items.pair]
        factor = self.item_weights(current, neighbours, items)
        if factor is not None:
            value = value * factor
        flat = torch.from_numpy(neighbours.row[items.pair] * self.n_items + items.item)
        out = torch.zeros(len(length) * self.n_items, dtype=torch.float32)
        out.index_add_(0, flat, torch.from_numpy(value.astype(np.float32)))
        return out.view(len(length), self.n_items).to(item_seq.device)


class SessionKNN(SequentialRecommender):
    """A session-based nearest-neighbour model on RecBole's interface, with no gradient training.

    Like RecBole's ``Pop``: one dummy parameter, ``calculate_loss`` returns a zero that requires grad, one epoch
    in the model's yaml. The index is built at construction from the data set's clicks and is not part of the
    checkpoint (it is the data: loading a checkpoint rebuilds it from the same data set). Subclasses set
    :meth:`build_scoring` from their own keys.
    """

    input_type = InputType.POINTWISE
    trains = False  # TASRecTrainer: one epoch, no learning-rate schedule

    def __init__(self, config: Any, dataset: Any) -> None:
        index = SessionIndex.from_dataset(dataset)  # first: it says what to do with a plain RecBole data set
        super().__init__(config, dataset)
        self.day_field = dataset.day_field
        self.time_list_field = dataset.time_field + config["LIST_SUFFIX"]
        streaming = config["knn_streaming"]
        self.scoring = self.build_scoring(config, index, True if streaming is None else bool(streaming))
        self.dummy = nn.Parameter(torch.zeros(1))

    def build_scoring(self, config: Any, index: SessionIndex, streaming: bool) -> NeighbourScoring:
        raise NotImplementedError

    def calculate_loss(self, interaction: Any) -> Tensor:
        return self.dummy.sum() * 0.0

    def full_sort_predict(self, interaction: Any) -> Tensor:
        day = interaction[self.day_field].long()
        lengths = interaction[self.ITEM_SEQ_LEN]
        # the last click so far; RecBole keeps times as float32 (about 128 s apart), fine for decays of days
        time = interaction[self.time_list_field].double().gather(1, (lengths.long() - 1).unsqueeze(1)).squeeze(1)
        return self.scoring.scores(interaction[self.ITEM_SEQ], lengths, day, time)

    def predict(self, interaction: Any) -> Tensor:
        scores = self.full_sort_predict(interaction)
        return scores.gather(1, interaction[self.ITEM_ID].long().unsqueeze(1)).squeeze(1)

    # --- serving without a data set (added for recbole_tasrec.serve.knn) ---------------------------------------
    @classmethod
    def scoring_for(cls, config: Any, index: SessionIndex) -> NeighbourScoring:
        """The scoring pass of this model over ``index`` with ``config``'s keys, without a data set or a built
        model: what a served (exported, then extended) index is scored with. ``build_scoring`` reads only its
        arguments, so it runs on a bare instance."""
        streaming = config["knn_streaming"]
        return cls.build_scoring(cls.__new__(cls), config, index, True if streaming is None else bool(streaming))
