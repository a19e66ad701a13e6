"""What every served model is to the CLI, the HTTP service and the ranking: :class:`ServedModel`.

A served model is its raw item ids, its settings and one immutable :class:`ServedState` (the day, digests of
the days folded in, and the model's own data: TASRec's temporal graph, a kNN model's session index). Three
rules make serving safe under concurrent requests and advances:

* scoring reads ``self.state`` once and scores with that snapshot, so an answer's day and its scores come from
  one state (:meth:`ServedModel.scores`, :class:`~recbole_tasrec.serve.ranking.Ranker`);
* an advance builds the next state aside (:meth:`ServedModel.advanced`), the caller saves it, and only then is
  it swapped in by one assignment (:meth:`ServedModel.commit`): a failed save leaves the served model unchanged;
* a day whose sessions were folded in already (the same digest, among the last :data:`FOLDED_KEPT`) is refused
  (:class:`DayAlreadyFolded`): a retry after a success never folds a day twice. An empty day is never refused
  (two quiet days in a row are real); a retry after a failed save is fine, nothing changed.

An advance can also train a neural model's weights on the day (``train``, :mod:`~recbole_tasrec.serve.day_training`):
a copy is trained with the state that scored the day and becomes part of the next state, swapped in with it.

Implementations: :class:`~recbole_tasrec.serve.recommender.SessionRecommender` (TASRec),
:class:`~recbole_tasrec.serve.knn.KNNRecommender` (SKNN, V-SKNN, STAN) and
:class:`~recbole_tasrec.serve.sequential.NeuralRecommender` (RecBole's sequential models, LESSR, CSRM). Each gives
:meth:`_score`, :meth:`_fold`, :meth:`_files`, ``from_read`` and ``from_checkpoint`` (a line in
``models.SERVED``), and a model with weights :meth:`_train`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from recbole_tasrec.serve import artifact

if TYPE_CHECKING:  # the trainer loads only when an advance trains
    from recbole_tasrec.serve.day_training import TrainOptions

logger = logging.getLogger(__name__)

#: digests of the most recent days folded in that are kept (in meta.json) to refuse a day folded twice
FOLDED_KEPT = 64


class DayAlreadyFolded(ValueError):
    """A day of sessions that the served model has folded in already."""


@dataclass(frozen=True)
class ServedState:
    """What a request is scored with: swapped whole, never changed in place."""

    day: int
    folded: tuple[str, ...] = ()


@dataclass(frozen=True)
class Advance:
    """A next state built aside from ``base``; ``counts``: what was folded in (for the summary)."""

    base: ServedState
    state: ServedState
    counts: dict[str, int] = field(default_factory=dict)


def _known(ids: np.ndarray, session_of: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(item ids of every known click, known clicks per session) of ``n`` encoded sessions."""
    known = ids > 0
    return ids[known], np.bincount(session_of[known], minlength=n)


def day_digest(sessions: Sequence[Sequence[Any]]) -> str:
    """SHA-256 of a day's sessions as given (ids as text, in order): equal digests, the same day."""
    text = json.dumps([[str(item) for item in session] for session in sessions], separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ServedModel:
    """A model served from raw item ids: ``scores``, ``recommend``, ``advanced`` + ``commit``, ``save``."""

    #: the artefact's tensor files this model writes and reads
    files: tuple[str, ...] = ()
    #: whether an advance can train the model's weights (:meth:`_train`)
    trains = False
    #: ranking scans an int8 copy of the item table, exactly, above this many items (``serve/topk.py``; 0: never)
    bounded_topk_above: int = 200_000

    def __init__(self, item_tokens: Any, settings: artifact.Settings, state: ServedState, max_seq_length: int) -> None:
        self.item_tokens = np.asarray(item_tokens).astype(str)
        self._ids = {token: i for i, token in enumerate(self.item_tokens.tolist()) if i > 0}  # 0: padding, unknown
        self.settings = settings
        self.max_seq_length = int(max_seq_length)
        self.state = state

    @property
    def day(self) -> int:
        """How many days the served state has folded in (the day requests are scored as)."""
        return self.state.day

    # --- requests ------------------------------------------------------------------------------------------
    def encode(self, sessions: Sequence[Sequence[Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The one encoder of raw item ids: (every click's item id, 0 where unknown; every click's session; the
        clicks as text)."""
        if isinstance(sessions, str | bytes) or any(isinstance(s, str | bytes) for s in sessions):
            raise TypeError("pass a list of sessions, each a list of item ids, e.g. [['a', 'b'], ['c']]")
        lengths = np.fromiter((len(s) for s in sessions), dtype=np.int64, count=len(sessions))
        flat = np.array([str(item) for s in sessions for item in s], dtype=object)
        # a dict lookup per click: ~10x faster than pandas' get_indexer on the few clicks of a request
        ids = np.fromiter(map(self._ids.get, flat, repeat(0, len(flat))), dtype=np.int64, count=len(flat))
        return ids, np.repeat(np.arange(len(sessions)), lengths), flat

    def known_clicks(self, sessions: Sequence[Sequence[Any]]) -> tuple[np.ndarray, np.ndarray]:
        """(item ids of every known click, known clicks per session); unknown items are skipped."""
        ids, session_of, _ = self.encode(sessions)
        return _known(ids, session_of, len(sessions))

    def padded(self, sessions: Sequence[Sequence[Any]]) -> tuple[np.ndarray, np.ndarray]:
        """RecBole's left-aligned, zero-padded ``(B, max_seq_length)`` item ids of each session's last known
        clicks, and their lengths (0: no known click)."""
        ids, session_of, _ = self.encode(sessions)
        return self.pad(ids, session_of, len(sessions))

    def pad(self, ids: np.ndarray, session_of: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`padded` of ``n`` sessions already encoded (:meth:`encode`'s ids and sessions, in session order):
        lets the ranking encode a request once."""
        items, counts = _known(ids, session_of, n)
        lengths = np.minimum(counts, self.max_seq_length)
        starts = np.cumsum(counts) - lengths
        offsets = np.arange(self.max_seq_length)
        inside = offsets < lengths[:, None]
        index = np.where(inside, starts[:, None] + offsets, 0)
        return np.where(inside, items[index] if len(items) else 0, 0), lengths

    def scores(self, sessions: Sequence[Sequence[Any]], state: ServedState | None = None) -> torch.Tensor:
        """Scores over all items (column ``j`` is item ``item_tokens[j]``) for each session's next click, from
        ``state`` (default: the served one, read once). Unknown items are skipped; a session with no known item
        scores ``-inf`` everywhere, and so does the padding item 0."""
        if len(sessions) == 0:
            raise ValueError("recommend() needs at least one session (a list of item ids)")
        return self.padded_scores(*self.padded(sessions), state)

    def padded_scores(self, seq: np.ndarray, lengths: np.ndarray, state: ServedState | None = None) -> torch.Tensor:
        """:meth:`scores` of sessions already padded (:meth:`pad`)."""
        state = self.state if state is None else state
        known = lengths > 0
        out = torch.full((len(lengths), len(self.item_tokens)), float("-inf"))
        if known.any():
            scored = self._score(seq[known], lengths[known], state)
            out = out.to(scored.device)
            out[torch.from_numpy(known).to(scored.device)] = scored
        out[:, 0] = float("-inf")
        return out

    def factors(
        self, seq: np.ndarray, lengths: np.ndarray, state: ServedState
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(vectors, table)`` with :meth:`scores` ``= vectors @ table.T`` (item 0 aside) for padded sessions
        (:meth:`pad`) that each have a known item, where the model scores so (TASRec); ``None`` for another model."""
        return self._factors(seq, lengths, state)

    def recommend(self, sessions: Sequence[Sequence[Any]], k: int = 20) -> list[list[str]]:
        """The top-``k`` next items (raw ids) for each session (:class:`~recbole_tasrec.serve.ranking.Ranker`, kept:
        its int8 index, if any, is built once)."""
        from recbole_tasrec.serve.ranking import Ranker

        if getattr(self, "_ranker", None) is None:
            self._ranker = Ranker(self)
        return self._ranker.rank(list(sessions), k).items

    # --- advancing -----------------------------------------------------------------------------------------
    def advanced(self, sessions: Sequence[Sequence[Any]], train: TrainOptions | None = None) -> Advance:
        """The state after folding in one finished day of ``sessions``, built aside (nothing served changes);
        with ``train``, its weights also trained on the day (:meth:`_train`).

        Items unknown to the model are skipped; an empty day only moves the day on. Raises
        :class:`DayAlreadyFolded` for a non-empty day folded in already."""
        base = self.state
        digest = day_digest(sessions)
        if len(sessions) and digest in base.folded:
            raise DayAlreadyFolded(
                f"this day's sessions were folded in already (day {base.day} holds them): not folded twice"
            )
        items, counts = self.known_clicks(sessions)
        folded = (*base.folded, digest)[-FOLDED_KEPT:]
        state, counts_folded = self._fold(base, items, counts, folded)
        if train is not None:
            state, loss = self._train(base, state, items, counts, self.training(train))
            counts_folded = {**counts_folded, "training_samples": int(np.maximum(counts - 1, 0).sum())}
            logger.info("trained on day %d: mean loss %.4f", base.day, loss)
        return Advance(base, state, counts_folded)

    def training(self, train: TrainOptions) -> TrainOptions:
        """``train`` with the artefact's defaults filled in, checked; refused for a model without weights."""
        if not self.trains:
            raise ValueError(f"a {self.settings['model']} model has no weights to train: advance it without --train")
        return train.resolved(self.settings)

    def commit(self, advance: Advance) -> None:
        """Serve ``advance``'s state from now on (one assignment); refused if another advance came first."""
        if self.state is not advance.base:
            raise RuntimeError("another advance changed the served model meanwhile: build this one again")
        self.state = advance.state

    def advance_day(self, sessions: Sequence[Sequence[Any]], train: TrainOptions | None = None) -> Advance:
        """Fold one finished day in and serve it, without saving (:meth:`advance_and_save` saves first)."""
        return self.advance_and_save(sessions, None, train)

    def advance_and_save(
        self,
        sessions: Sequence[Sequence[Any]],
        directory: str | os.PathLike[str] | None,
        train: TrainOptions | None = None,
    ) -> Advance:
        """Build the next state aside (trained on the day with ``train``), write it to ``directory`` (durably:
        fsync, rename), then serve it. A failed save (:class:`~recbole_tasrec.safe_write.WriteError`) leaves the
        served model and the artefact unchanged; ``directory=None`` serves the next state without saving it."""
        advance = self.advanced(sessions, train)
        if directory is not None:
            self.save(directory, advance.state)
        self.commit(advance)
        return advance

    # --- the artefact --------------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str], state: ServedState | None = None) -> Path:
        """Write the serving artefact of ``state`` (default: the served one) atomically."""
        state = self.state if state is None else state
        meta = {
            "model": str(self.settings["model"]),
            "n_items": len(self.item_tokens),
            "day": int(state.day),
            "folded": list(state.folded),
            "settings": dict(self.settings),
            "state": self._state_meta(state),
            "item_tokens": self.item_tokens.tolist(),
        }
        return artifact.write_artifact(directory, meta, self._files(state))

    # --- what an implementation gives ----------------------------------------------------------------------
    def _score(self, seq: np.ndarray, lengths: np.ndarray, state: ServedState) -> torch.Tensor:
        """``(B, n_items)`` scores of padded sessions of at least one known click, from ``state``."""
        raise NotImplementedError

    def _factors(
        self, seq: np.ndarray, lengths: np.ndarray, state: ServedState
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """:meth:`factors` of padded sessions of at least one known click; ``None``: scores are no such product."""
        return None

    def _fold(
        self, base: ServedState, items: np.ndarray, counts: np.ndarray, folded: tuple[str, ...]
    ) -> tuple[ServedState, dict[str, int]]:
        """The state after ``base`` and one day of known clicks (``counts`` per session), and what was used."""
        raise NotImplementedError

    def _train(
        self, base: ServedState, state: ServedState, items: np.ndarray, counts: np.ndarray, options: TrainOptions
    ) -> tuple[ServedState, float]:
        """``state`` (``base`` with the day folded in) with its weights trained on the day's known clicks, scored
        as ``base`` scored them; the mean loss of the last pass."""
        raise NotImplementedError

    def _files(self, state: ServedState) -> dict[str, dict[str, torch.Tensor]]:
        """The artefact's tensor files of ``state``."""
        raise NotImplementedError

    def _state_meta(self, state: ServedState) -> dict[str, Any]:
        """The JSON settings of ``state`` that its tensors do not hold."""
        return {}
