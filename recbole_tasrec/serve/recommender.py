"""Serve next-item recommendations from a TASRec checkpoint alone, and keep them current day by day.

The checkpoint carries the weights, the temporal graph after the last day it saw, and the raw item ids
(``TASRec.get_extra_state`` and ``other_parameter``), so a serving process needs no training data::

    recommender = SessionRecommender.from_checkpoint("runs/saved/TASRec-....pth")
    recommender.recommend([["item_a", "item_b"]], k=20)   # raw item ids in, raw item ids out
    recommender.advance_day(todays_sessions)             # fold in a finished day: E <- E * decay + E_day

This is the paper's point: the weights stay fixed while the graph follows the interests of each new day.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import torch
from recbole.data.interaction import Interaction

from recbole_tasrec.checkpoint import check_identity, checkpoint_identity, load_trusted, tokens_digest
from recbole_tasrec.data.clicks import transition_pairs
from recbole_tasrec.data.temporal_graph import TemporalGraph, check_threshold
from recbole_tasrec.model.tasrec import TASRec
from recbole_tasrec.serve import artifact
from recbole_tasrec.serve.ranking import Ranker

logger = logging.getLogger(__name__)


class LatestGraph:
    """The serving graph source (:class:`~recbole_tasrec.model.graph_source.GraphSource`): one
    ``TemporalGraph`` that new days are folded into; every request is scored with it, whatever its day."""

    def __init__(self, graph: TemporalGraph, threshold: float) -> None:
        self.graph, self.threshold = graph, check_threshold(threshold)
        self._cached: tuple[int, str, torch.Tensor] | None = None

    def propagation(self, day: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Eq. 2's ``P`` of the current graph (recomputed once after each ``advance``)."""
        key = (self.graph.day, str(torch.device(device)) if device is not None else "cpu")
        if self._cached is None or self._cached[:2] != key:
            self._cached = (*key, self.graph.propagation(self.threshold, device=device))
        return self._cached[2]

    def latest_graph(self) -> TemporalGraph:
        return self.graph.copy()


class SessionRecommender:
    """A trained TASRec, its temporal graph and its item ids: ``recommend`` and ``advance_day``."""

    settings: artifact.Settings | None = None  # the config values the model was built with (for save)

    def __init__(self, model: TASRec, window: int = 1) -> None:
        if not isinstance(model.graph_source, LatestGraph):
            raise TypeError("SessionRecommender serves a TASRec built on a LatestGraph (see from_checkpoint)")
        self.model = model.eval()
        self.window = window
        self.item_tokens = np.asarray(model.item_tokens).astype(str)
        self._ids = {token: i for i, token in enumerate(self.item_tokens.tolist()) if i > 0}  # 0: padding, unknown

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> SessionRecommender:
        """Load a checkpoint written by ``run_recbole_tasrec`` (a TASRec one). It is a pickle: only load your own
        files; :meth:`from_artifact` reads the safe export (``python -m recbole_tasrec.serve export``)."""
        logger.info("loading %s with pickle: trusting that file (a safe artefact loads with from_artifact)", path)
        checkpoint = load_trusted(path, ("config", "state_dict", "other_parameter"))
        config = checkpoint["config"]
        if config["model"] != "TASRec":
            raise ValueError(f"{path} holds a {config['model']} model; SessionRecommender serves TASRec")
        tokens = np.asarray(checkpoint["other_parameter"]["item_tokens"])
        # the item ids must be the ones the weights were trained with (the identity the trainer stored)
        held = {"model": "TASRec", "n_items": len(tokens), "item_digest": tokens_digest(tokens)}
        check_identity(held, checkpoint_identity(checkpoint), path)
        return cls.from_state(config, tokens, checkpoint["state_dict"], device)

    @classmethod
    def from_state(
        cls,
        config: Mapping[str, Any],
        tokens: np.ndarray,
        state_dict: Mapping[str, Any] | None,
        device: Any = "cpu",
        graph: TemporalGraph | None = None,
    ) -> SessionRecommender:
        """Build from config values, raw item ids and a state dict that carries the graph (``_extra_state``).

        ``state_dict=None`` keeps the initial (untrained) weights and serves ``graph``: for load tests."""
        config["device"] = torch.device(device)
        graph = TASRec.saved_graph(state_dict) if graph is None else graph
        source = LatestGraph(graph, float(config["neighbor_threshold"]))
        model = TASRec.from_graph_source(config, np.asarray(tokens), source)
        if state_dict is not None:
            model.load_state_dict(state_dict)
        recommender = cls(model.to(device), int(config["temporal_window"]))
        recommender.settings = artifact.serving_settings(config)
        return recommender

    @classmethod
    def from_artifact(cls, directory: str | os.PathLike[str], device: Any = "cpu") -> SessionRecommender:
        """Load a serving artefact (:mod:`~recbole_tasrec.serve.artifact`): tensors and JSON only, no pickle."""
        saved = artifact.read_artifact(directory)
        state = {**saved.weights, "_extra_state": {"graph": saved.graph.state_dict()}}
        return cls.from_state(saved.settings, saved.item_tokens, state, device)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the serving artefact atomically, so that a restart continues from the last finished day."""
        if self.settings is None:
            raise ValueError("save() needs a recommender built by from_checkpoint, from_artifact or from_state")
        weights = dict(self.model.named_parameters()) | dict(self.model.named_buffers())
        return artifact.write_artifact(directory, self.settings, self.item_tokens, weights, self.graph)

    @property
    def graph(self) -> TemporalGraph:
        """The temporal graph every request is scored with (advanced by :meth:`advance_day`)."""
        return self.model.graph_source.graph

    @property
    def day(self) -> int:
        """How many days the graph has folded in."""
        return self.graph.day

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

    def _known_clicks(self, sessions: Sequence[Sequence[Any]]) -> tuple[np.ndarray, np.ndarray]:
        """(item ids of every known click, known clicks per session); unknown items are skipped."""
        ids, session_of, _ = self.encode(sessions)
        known = ids > 0
        return ids[known], np.bincount(session_of[known], minlength=len(sessions))

    def scores(self, sessions: Sequence[Sequence[Any]]) -> torch.Tensor:
        """Scores over all items (column ``j`` is item ``item_tokens[j]``) for each session's next click.

        Items the model never saw are skipped; a session with no known item scores ``-inf`` everywhere.
        """
        if len(sessions) == 0:
            raise ValueError("recommend() needs at least one session (a list of item ids)")
        items, counts = self._known_clicks(sessions)
        max_len = self.model.max_seq_length
        lengths = np.minimum(counts, max_len)
        starts = np.cumsum(counts) - lengths  # each session's last max_len known clicks
        offsets = np.arange(max_len)
        index = starts[:, None] + offsets
        inside = offsets < lengths[:, None]
        seq = torch.from_numpy(np.where(inside, items[np.where(inside, index, 0)] if len(items) else 0, 0))
        known = torch.from_numpy(lengths > 0)
        device = self.model.item_embedding.weight.device
        out = torch.full((len(lengths), len(self.item_tokens)), float("-inf"), device=device)
        if known.any():
            batch = Interaction(
                {
                    self.model.ITEM_SEQ: seq[known],
                    self.model.ITEM_SEQ_LEN: torch.from_numpy(lengths)[known],
                    self.model.day_field: torch.full((int(known.sum()),), float(self.graph.day)),
                }
            ).to(device)
            with torch.no_grad():
                out[known.to(device)] = self.model.full_sort_predict(batch)
        out[:, 0] = float("-inf")  # the padding id is never recommended
        return out

    def recommend(self, sessions: Sequence[Sequence[Any]], k: int = 20) -> list[list[str]]:
        """The top-``k`` next items (raw ids) for each session (:class:`~recbole_tasrec.serve.ranking.Ranker`)."""
        return Ranker(self).rank(list(sessions), k).items

    def advance_day(self, sessions: Sequence[Sequence[Any]]) -> int:
        """Fold one finished day of sessions into the graph (Eq. 1); returns the number of transitions used.

        Items unknown to the model cannot be nodes and are skipped; an empty day just decays the graph.
        """
        items, counts = self._known_clicks(sessions)
        session_index = np.repeat(np.arange(len(counts)), counts)
        src, dst = transition_pairs(session_index, items, window=self.window)
        graph = self.graph.copy()  # built aside, then swapped in: a request sees the old graph or the new one
        graph.advance(src, dst)
        source = LatestGraph(graph, self.model.graph_source.threshold)
        source.propagation(graph.day, self.model.item_embedding.weight.device)  # ready before the swap
        self.model.graph_source = source  # one assignment: a request sees the old graph or the new one
        return len(src)
