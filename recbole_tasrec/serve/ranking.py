"""Top-k with scores, seen-item exclusion and unknown-item reports: what the CLI and the HTTP service return.

Built on :meth:`ServedModel.scores <recbole_tasrec.serve.served.ServedModel.scores>`, with the served state read
once per call: every session of a call, and the day reported with them, come from one state. Item ids the model
never saw (including items first seen in a day folded in later: they have no trained embedding, so they are
neither nodes of the graph nor candidates) are skipped and reported; a session of unknown items only gets no
recommendation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from recbole_tasrec.serve.topk import BoundedTopK, topk_rows

if TYPE_CHECKING:  # the served model's recommend() is built on this module
    from recbole_tasrec.serve.served import ServedModel, ServedState

#: sessions scored at once: bounds the (sessions x items) score matrix to ~40 MB at 40,000 items
CHUNK = 256


@dataclass
class Ranked:
    """``items[s]`` and ``scores[s]``: session ``s``'s recommendations, best first; ``unknown[s]``: skipped ids;
    ``day``: the day of the state that scored them."""

    items: list[list[str]]
    scores: list[list[float]]
    unknown: list[list[str]]
    day: int | None = None


class Ranker:
    """Ranks the items of one recommender (its item ids are fixed for its lifetime, so the index is built once)."""

    def __init__(self, recommender: ServedModel) -> None:
        self.recommender = recommender
        self.tokens = np.asarray(recommender.item_tokens, dtype=str)
        self._index: tuple[tuple[torch.Tensor, int], BoundedTopK] | None = None
        self._columns: tuple[tuple[torch.Tensor, int], torch.Tensor] | None = None

    def encode(self, sessions: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(every click's item id, 0 where unknown; every click's session; the clicks as text)."""
        return self.recommender.encode(sessions)

    def unknown(self, ids: np.ndarray, session_of: np.ndarray, flat: np.ndarray, n: int) -> list[list[str]]:
        """Each session's unknown item ids, once each, in click order."""
        out: list[list[str]] = [[] for _ in range(n)]
        for s, item in dict.fromkeys(zip(session_of[ids == 0].tolist(), flat[ids == 0].tolist(), strict=True)):
            out[s].append(item)
        return out

    def rank(
        self, sessions: Sequence[Sequence[str]], k: int | Sequence[int], exclude_seen: bool | Sequence[bool] = False
    ) -> Ranked:
        """The top-``k`` items and scores of each session (fewer when the model has fewer candidates).

        ``k`` and ``exclude_seen`` are one value for every session, or one per session (requests scored together).
        """
        if len(sessions) == 0:
            raise ValueError("ranking needs at least one session (a list of item ids)")
        ks = np.broadcast_to(np.asarray(self.bounded_k(k), dtype=np.int64), (len(sessions),))
        excluding = np.broadcast_to(np.asarray(exclude_seen, dtype=bool), (len(sessions),))
        state = self.recommender.state  # read once: the day and every score come from this state
        ids, session_of, flat = self.encode(sessions)
        ranked = Ranked([], [], self.unknown(ids, session_of, flat, len(sessions)), state.day)
        for start in range(0, len(sessions), CHUNK):
            stop = min(start + CHUNK, len(sessions))
            seen = (session_of >= start) & (session_of < stop) & (ids > 0) & excluding[session_of]
            seen_pairs = (torch.from_numpy(session_of[seen] - start), torch.from_numpy(ids[seen]))
            k_most = int(ks[start:stop].max())
            lo, hi = np.searchsorted(session_of, [start, stop])  # encode() lists clicks in session order
            padded = self.recommender.pad(ids[lo:hi], session_of[lo:hi] - start, stop - start)
            top = self._factored_topk(padded, state, seen_pairs, k_most)
            if top is None:
                scores = self.recommender.padded_scores(*padded, state)
                scores[seen_pairs] = float("-inf")
                top = topk_rows(scores, k_most)
            values = top[0].cpu().numpy()
            if (ks[start:stop] < k_most).any():  # each session's own k
                values[np.arange(values.shape[1]) >= ks[start:stop, None]] = -np.inf
            self._collect(ranked, top[1].cpu().numpy(), values)
        return ranked

    # --- a model that scores ``vectors @ table.T`` (TASRec): top-k from its factors --------------------------------
    def _factored_topk(
        self, padded: tuple[np.ndarray, np.ndarray], state: ServedState, seen: tuple, k: int
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """What ``torch.topk`` of the masked scores of the ``padded`` sessions gives (the padding item and the
        ``seen`` pairs excluded, a session without a known item at ``-inf`` throughout), or ``None`` if the scores
        are no product of session vectors and an item table.

        Up to ``bounded_topk_above`` items the scores are one product with a column-major copy of the table: a
        batch of sessions then reads the table once (row-major, BLAS reads it once per session: 1.36 ms for 4
        sessions at 40,000 x 100 here, against 0.71: benchmarks/bench_ranking.py); above it, an int8 scan
        (serve/topk.py) reads a quarter."""
        seq, lengths = padded
        known = np.flatnonzero(lengths > 0)
        factors = self.recommender.factors(seq[known], lengths[known], state) if len(known) else None
        if factors is None and len(known):
            return None
        if not len(known):
            return _no_answers(len(lengths), k)
        vectors, table = factors
        rows, cols = seen
        if len(known) < len(lengths):  # the seen pairs' rows among the known sessions
            row_of = torch.full((len(lengths),), -1, dtype=torch.long)
            row_of[torch.from_numpy(known)] = torch.arange(len(known))
            rows = row_of[rows]
            rows, cols = rows[rows >= 0], cols[rows >= 0]
        if 0 < self.recommender.bounded_topk_above < len(self.tokens):
            padding = torch.arange(len(known))
            exclude = (torch.cat([padding, rows]), torch.cat([torch.zeros_like(padding), cols]))
            top = self._index_of(table).topk(vectors.cpu(), k, exclude)
        else:
            scores = vectors @ self._columns_of(table)  # on the model's device
            scores[:, 0] = float("-inf")
            if len(rows):
                scores[rows.to(scores.device), cols.to(scores.device)] = float("-inf")
            top = tuple(part.cpu() for part in topk_rows(scores, k))
        if len(known) == len(lengths):
            return top
        values, items = _no_answers(len(lengths), k)
        values[known], items[known] = top
        return values, items

    def _index_of(self, table: torch.Tensor) -> BoundedTopK:
        """The int8 index of ``table``, built once (again if the table changed)."""
        if self._index is None or not _same(self._index[0], table):
            self._index = ((table, table._version), BoundedTopK(table.cpu()))
        return self._index[1]

    def _columns_of(self, table: torch.Tensor) -> torch.Tensor:
        """``table.T`` laid out column-major, ``(d, n)`` contiguous, made once (again if the table changed)."""
        if self._columns is None or not _same(self._columns[0], table):
            self._columns = ((table, table._version), table.detach().t().contiguous())
        return self._columns[1]

    def bounded_k(self, k: int | Sequence[int]) -> int | list[int]:
        """``k`` at most the item count, checked as Python ints: a ``k`` of 2**64 is the item count, not an
        OverflowError; ``k`` below 1 is a ``ValueError``."""
        ks = [k] if isinstance(k, int | np.integer) else list(k)
        if any(int(one) < 1 for one in ks):
            raise ValueError(f"k must be at least 1, got {min(int(one) for one in ks)}")
        bounded = [min(int(one), len(self.tokens) - 1) for one in ks]
        return bounded[0] if isinstance(k, int | np.integer) else bounded

    def _collect(self, ranked: Ranked, indices: np.ndarray, values: np.ndarray) -> None:
        valid = np.isfinite(values)
        names = self.tokens[indices]
        for row in range(len(indices)):
            ranked.items.append(names[row, valid[row]].tolist())
            ranked.scores.append(values[row, valid[row]].tolist())

    def frame(self, session_ids: Sequence[str], ranked: Ranked) -> pd.DataFrame:
        """The CLI's output table: one row per recommendation, ``session_id, rank, item_id, score``."""
        counts = np.array([len(row) for row in ranked.items], dtype=np.int64)
        starts = np.cumsum(counts) - counts
        return pd.DataFrame(
            {
                "session_id": np.repeat(np.asarray(session_ids, dtype=object), counts),
                "rank": np.arange(counts.sum()) - np.repeat(starts, counts) + 1,
                "item_id": [item for row in ranked.items for item in row],
                "score": np.array([v for row in ranked.scores for v in row], dtype=np.float32),
            }
        )


def _no_answers(n: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` values and items of ``n`` sessions without a candidate: ``-inf`` (dropped by ``Ranker._collect``)."""
    return torch.full((n, k), float("-inf")), torch.zeros((n, k), dtype=torch.long)


def _same(made_from: tuple[torch.Tensor, int], table: torch.Tensor) -> bool:
    """Whether ``table`` is the tensor, in the version, a copy was made from: a trained copy of the weights is
    another tensor, an edit in place bumps ``_version`` (the tensor is held, so its address is never reused)."""
    return made_from[0] is table and made_from[1] == table._version
