"""Serve next-item recommendations from a TASRec checkpoint alone, and keep them current day by day.

The checkpoint carries the weights, the temporal graph after the last day it saw, and the raw item ids
(``TASRec.get_extra_state`` and ``other_parameter``), so a serving process needs no training data::

    recommender = SessionRecommender.from_checkpoint("runs/saved/TASRec-....pth")
    recommender.recommend([["item_a", "item_b"]], k=20)   # raw item ids in, raw item ids out
    recommender.advance_day(todays_sessions)             # fold in a finished day: E <- E * decay + E_day

This is the paper's point: the weights stay fixed while the graph follows the interests of each new day. The
graph and the weights are the served state (:class:`GraphState`): each scoring thread pins the state it read
(:class:`ServingGraphs`), so the day and the scores of an answer come from one graph.

``advance_day(sessions, train=TrainOptions())`` also trains a copy of the weights on the day
(:mod:`~recbole_tasrec.serve.day_training`), with the graph before the day is folded in, the graph that scored
the day's samples, as ``continual: daily`` does; the trained copy and the advanced graph are swapped in together.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recbole_tasrec.checkpoint import check_identity, checkpoint_identity, load_trusted, tokens_digest
from recbole_tasrec.data.clicks import transition_pairs
from recbole_tasrec.data.temporal_graph import TemporalGraph, check_threshold
from recbole_tasrec.model.tasrec import TASRec
from recbole_tasrec.serve import artifact, day_training
from recbole_tasrec.serve.served import ServedModel, ServedState
from recbole_tasrec.serve.session_encoder import SessionEncoder, weights_version

logger = logging.getLogger(__name__)


class LatestGraph:
    """A graph source (:class:`~recbole_tasrec.model.graph_source.GraphSource`) of one ``TemporalGraph``, never
    changed once served: every request scored with it gets its propagation matrix, whatever its day."""

    def __init__(self, graph: TemporalGraph, threshold: float) -> None:
        self.graph, self.threshold = graph, check_threshold(threshold)
        self._cached: tuple[int, str, torch.Tensor] | None = None

    def propagation(self, day: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Eq. 2's ``P`` of the graph (computed once per device)."""
        key = (self.graph.day, str(torch.device(device)) if device is not None else "cpu")
        if self._cached is None or self._cached[:2] != key:
            self._cached = (*key, self.graph.propagation(self.threshold, device=device))
        return self._cached[2]

    def latest_graph(self) -> TemporalGraph:
        return self.graph.copy()


@dataclass(frozen=True)
class GraphState(ServedState):
    """A served TASRec's state: the temporal graph after ``day`` days, with its propagation matrix, and the
    model (its weights; never changed once served)."""

    source: LatestGraph | None = None
    model: TASRec | None = None

    @property
    def graph(self) -> TemporalGraph:
        return self.source.graph


class ServingGraphs:
    """The served TASRec's graph source: the graph of the state the calling thread pinned (:meth:`pinned`),
    else the served one. Scoring pins the state it read, so a concurrent advance never mixes two graphs."""

    def __init__(self, current: LatestGraph) -> None:
        self.current = current
        self._local = threading.local()

    def __deepcopy__(self, memo: dict[int, Any]) -> ServingGraphs:
        """Shared, not copied: a copy of the model (trained on a day) reads the graph of the state it serves in."""
        return self

    @contextlib.contextmanager
    def pinned(self, source: LatestGraph) -> Iterator[None]:
        previous = getattr(self._local, "source", None)
        self._local.source = source
        try:
            yield
        finally:
            self._local.source = previous

    def _source(self) -> LatestGraph:
        return getattr(self._local, "source", None) or self.current

    def propagation(self, day: int, device: torch.device | str | None = None) -> torch.Tensor:
        return self._source().propagation(day, device)

    def latest_graph(self) -> TemporalGraph:
        return self._source().latest_graph()


class SessionRecommender(ServedModel):
    """A trained TASRec, its temporal graph and its item ids: ``recommend`` and ``advance_day``."""

    files = (artifact.WEIGHTS, artifact.GRAPH)
    trains = True

    def __init__(self, model: TASRec, window: int = 1, settings: artifact.Settings | None = None) -> None:
        if not isinstance(model.graph_source, ServingGraphs):
            raise TypeError("SessionRecommender serves a TASRec built on ServingGraphs (see from_state)")
        self.graphs = model.graph_source
        self.window = window
        self._encoder: SessionEncoder | None = None
        source = model.graph_source.current
        state = GraphState(source.graph.day, (), source, model.eval())
        super().__init__(model.item_tokens, settings or artifact.Settings(), state, model.max_seq_length)

    @property
    def model(self) -> TASRec:
        """The weights requests are scored with (swapped with the graph by an advance that trains)."""
        return self.state.model

    @property
    def state(self) -> GraphState:
        return self._state

    @state.setter
    def state(self, state: GraphState) -> None:
        self._state = state  # what requests read; the model's fallback (state_dict, unpinned calls) follows
        self.graphs.current = state.source

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
        rate = day_training.checkpoint_rate(checkpoint)
        return cls.from_state(config, tokens, checkpoint["state_dict"], device, rate=rate)

    @classmethod
    def from_state(
        cls,
        config: Mapping[str, Any],
        tokens: np.ndarray,
        state_dict: Mapping[str, Any] | None,
        device: Any = "cpu",
        graph: TemporalGraph | None = None,
        rate: float | None = None,
    ) -> SessionRecommender:
        """Build from config values, raw item ids and a state dict that carries the graph (``_extra_state``);
        ``rate``: the learning rate training ended with (the default of a day's training).

        ``state_dict=None`` keeps the initial (untrained) weights and serves ``graph``: for load tests."""
        config["device"] = torch.device(device)
        graph = TASRec.saved_graph(state_dict) if graph is None else graph
        source = ServingGraphs(LatestGraph(graph, float(config["neighbor_threshold"])))
        model = TASRec.from_graph_source(config, np.asarray(tokens), source)
        if state_dict is not None:
            model.load_state_dict(state_dict)
        training = day_training.training_settings(config, rate)
        settings = artifact.Settings({**artifact.serving_settings(config), **training})
        return cls(model.to(device), int(config["temporal_window"]), settings)

    @classmethod
    def from_artifact(cls, directory: str | os.PathLike[str], device: Any = "cpu") -> SessionRecommender:
        """Load a serving artefact (:mod:`~recbole_tasrec.serve.artifact`): tensors and JSON only, no pickle."""
        return cls.from_read(artifact.read_artifact(directory), Path(directory), device)

    @classmethod
    def from_read(cls, saved: artifact.Artifact, directory: Path, device: Any = "cpu") -> SessionRecommender:
        """Build from an artefact already read and checked."""
        saved.require(directory, *cls.files)
        weights, graph_tensors = saved.tensors[artifact.WEIGHTS], saved.tensors[artifact.GRAPH]
        embedding = weights.get("item_embedding.weight")
        n_items = saved.meta["n_items"]
        if embedding is None or embedding.shape[0] != n_items:
            rows = None if embedding is None else embedding.shape[0]
            raise artifact.ArtifactError(
                f"{artifact.WEIGHTS} has an item table of {rows} rows but {artifact.META} says {n_items} items"
            )
        state = {name: graph_tensors[name].numpy() for name in ("indptr", "indices", "data") if name in graph_tensors}
        state.update(saved.meta["state"], n_items=n_items, day=saved.meta["day"])
        try:
            graph = TemporalGraph.from_state_dict(state)
        except (ValueError, TypeError) as error:
            raise artifact.ArtifactError(f"{directory / artifact.GRAPH}: {error}") from error
        recommender = cls.from_state(saved.settings, saved.item_tokens, {**weights, "_extra_state": {}}, device, graph)
        base = recommender.state
        recommender.state = GraphState(graph.day, tuple(saved.meta["folded"]), base.source, base.model)
        return recommender

    @property
    def graph(self) -> TemporalGraph:
        """The temporal graph every request is scored with (advanced by :meth:`advance_day`)."""
        return self.state.graph

    def _score(self, seq: np.ndarray, lengths: np.ndarray, state: GraphState) -> torch.Tensor:
        with torch.no_grad(), self.graphs.pinned(state.source):
            return state.model.full_sort_predict(self._batch(seq, lengths, state))

    def _factors(self, seq: np.ndarray, lengths: np.ndarray, state: GraphState) -> tuple[torch.Tensor, torch.Tensor]:
        """``full_sort_factors`` of the sessions: on the CPU by the NumPy :class:`SessionEncoder` (a request's few
        sessions cost a quarter of ``forward``'s torch operations), elsewhere by ``forward`` itself."""
        model = state.model
        table = model.item_embedding.weight
        if table.device.type != "cpu":
            return self.model_vectors(seq, lengths, state), table
        with torch.no_grad(), self.graphs.pinned(state.source):
            temporal = model.temporal_table(state.day).numpy() if model.use_temporal_graph else None
        return torch.from_numpy(self._encoder_of(model)(seq, lengths, temporal)), table

    def model_vectors(self, seq: np.ndarray, lengths: np.ndarray, state: GraphState | None = None) -> torch.Tensor:
        """``TASRec.forward`` of padded sessions as ``state`` (default: the served one) scores them, in torch: what
        serves on a GPU, and what the NumPy encoder is held equal to."""
        state = self.state if state is None else state
        device = state.model.item_embedding.weight.device
        with torch.no_grad(), self.graphs.pinned(state.source):
            lengths_t = torch.from_numpy(lengths).to(device)
            return state.model(torch.from_numpy(seq).to(device), lengths_t, torch.full_like(lengths_t, state.day))

    def _encoder_of(self, model: TASRec) -> SessionEncoder:
        """The NumPy encoder of ``model`` (the served state's weights), made once per model and weights."""
        encoder = self._encoder
        if encoder is None or encoder.model is not model or encoder.version != weights_version(model):
            encoder = self._encoder = SessionEncoder(model)
        return encoder

    def _batch(self, seq: np.ndarray, lengths: np.ndarray, state: GraphState) -> Any:
        model = state.model
        return day_training.sample_batch(model, seq, lengths, state.day).to(model.item_embedding.weight.device)

    def _fold(
        self, base: GraphState, items: np.ndarray, counts: np.ndarray, folded: tuple[str, ...]
    ) -> tuple[GraphState, dict[str, int]]:
        """Eq. 1 on a copy of the graph: ``E <- E * decay + E_day`` from the day's transitions."""
        session_index = np.repeat(np.arange(len(counts)), counts)
        src, dst = transition_pairs(session_index, items, window=self.window)
        graph = base.graph.copy()
        graph.advance(src, dst)
        source = LatestGraph(graph, base.source.threshold)
        source.propagation(graph.day, base.model.item_embedding.weight.device)  # ready before the swap
        return GraphState(graph.day, folded, source, base.model), {"transitions": len(src)}

    def _train(
        self,
        base: GraphState,
        state: GraphState,
        items: np.ndarray,
        counts: np.ndarray,
        options: day_training.TrainOptions,
    ) -> tuple[GraphState, float]:
        """A copy of the weights trained on the day's samples with ``base``'s graph (the one that scored them)."""
        seq, lengths, targets = day_training.prefix_samples(items, counts, self.max_seq_length)
        samples = day_training.sample_batch(base.model, seq, lengths, base.day, targets)
        with self.graphs.pinned(base.source):
            trained, loss = day_training.train_copy(base.model, self.settings, samples, base.day, options)
        return GraphState(state.day, state.folded, state.source, trained), loss

    def _files(self, state: GraphState) -> dict[str, dict[str, torch.Tensor]]:
        weights = dict(state.model.named_parameters()) | dict(state.model.named_buffers())
        graph = state.graph.state_dict()
        return {
            artifact.WEIGHTS: weights,
            artifact.GRAPH: {name: torch.from_numpy(graph[name]) for name in ("indptr", "indices", "data")},
        }

    def _state_meta(self, state: GraphState) -> dict[str, Any]:
        graph = state.graph
        return {
            "decay": graph.decay,
            "edge_weight": graph.edge_weight,
            "prune_below": graph.prune_below,
            "padding_idx": graph.padding_idx,
        }
