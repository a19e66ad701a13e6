"""Serving SKNN, V-SKNN and STAN: the session index as plain arrays, extended day by day.

A kNN model has no weights: its index of past sessions (:class:`~recbole_tasrec.model.session_knn.SessionIndex`)
is built from the data set, so ``export`` loads the data set through ``load_data_and_model`` on the (trusted)
checkpoint and writes the index to ``index.pt`` as plain tensors: the CSR of session x item positions, each
session's day, split, start rank, distinct items and last-click time, and the training click counts.

Requests are scored as the evaluation scores a sample of day ``day`` (every session of the days before is known
with ``knn_streaming``, the training split without it) at the time ``clock``: the last click indexed. STAN's
recency factor then ranks neighbours exactly as at any later time (it is a common factor for all of them).
``advance`` appends the day's sessions (known items, at least one) to the index, as sessions of day ``day``
ending at ``clock + 1 day`` in the order given (later ones more recent), rebuilds the scoring pass over it (the
same ``sample_size`` most recent candidates as evaluation) and moves ``day`` and ``clock`` on. The IDF of V-SKNN
stays the training split's, as the model keeps it fixed. With ``knn_streaming: False`` the appended sessions are
never neighbours (the model only knows the training split), as in evaluation.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from recbole_tasrec.data.clicks import DayClicks
from recbole_tasrec.data.dataset import TEST
from recbole_tasrec.model.session_knn import NeighbourScoring, SessionIndex, SessionKNN
from recbole_tasrec.model.sknn import SKNN
from recbole_tasrec.model.stan import STAN
from recbole_tasrec.model.vsknn import VSKNN
from recbole_tasrec.serve import artifact
from recbole_tasrec.serve.served import ServedModel, ServedState

logger = logging.getLogger(__name__)

KNN_MODELS: dict[str, type[SessionKNN]] = {"SKNN": SKNN, "VSKNN": VSKNN, "STAN": STAN}
SECONDS_PER_DAY = 86400.0
#: the index's per-session arrays, with their dtypes
SESSION_ARRAYS = {"day": np.int64, "split": np.int64, "start_rank": np.int64, "size": np.int64, "last_time": np.float64}


@dataclass(frozen=True)
class IndexState(ServedState):
    """A served kNN model's state: the index, its scoring pass, and the time requests are scored at."""

    scoring: NeighbourScoring | None = None
    clock: float = 0.0

    @property
    def index(self) -> SessionIndex:
        return self.scoring.index


def index_tensors(index: SessionIndex) -> dict[str, torch.Tensor]:
    """The index as plain tensors (what ``index.pt`` holds)."""
    positions = index.positions
    arrays = {
        "indptr": positions.indptr.astype(np.int64),
        "indices": positions.indices.astype(np.int64),
        "positions": positions.data.astype(np.float64),
        "train_clicks": np.asarray(index.train_clicks, np.int64),
        **{name: np.asarray(getattr(index, name), dtype) for name, dtype in SESSION_ARRAYS.items()},
    }
    return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in arrays.items()}


def index_from_tensors(tensors: dict[str, torch.Tensor], n_items: int, source: Path) -> SessionIndex:
    """The index of ``index.pt``'s tensors, their shapes checked (an :class:`ArtifactError` names the file)."""
    names = ["indptr", "indices", "positions", "train_clicks", *SESSION_ARRAYS]
    missing = [name for name in names if name not in tensors]
    if missing:
        raise artifact.ArtifactError(f"{source} lacks the index arrays {missing}")
    arrays = {name: tensors[name].numpy() for name in names}
    n_sessions = len(arrays["indptr"]) - 1
    wrong = [name for name in SESSION_ARRAYS if arrays[name].shape != (n_sessions,)]
    if arrays["train_clicks"].shape != (n_items,):
        wrong.append("train_clicks")
    indices = arrays["indices"]
    if len(indices) != arrays["indptr"][-1] or len(indices) != len(arrays["positions"]) or wrong:
        raise artifact.ArtifactError(f"{source}: the index arrays disagree in length ({wrong or 'indices'})")
    if len(indices) and (indices.min() < 0 or indices.max() >= n_items):
        raise artifact.ArtifactError(f"{source}: the index names items outside 0..{n_items - 1}")
    positions = sp.csr_matrix((arrays["positions"], indices, arrays["indptr"]), shape=(n_sessions, n_items))
    fields = {name: arrays[name].astype(dtype) for name, dtype in SESSION_ARRAYS.items()}
    return SessionIndex(positions=positions, train_clicks=arrays["train_clicks"], **fields)


def extend_index(index: SessionIndex, items: np.ndarray, counts: np.ndarray, day: int, time: float) -> SessionIndex:
    """``index`` with one day's sessions appended (``counts`` known clicks each, in order; empty ones left out):
    day ``day``, split test, all ending at ``time``, each more recent than the one before it."""
    kept = counts > 0
    session = np.repeat(np.arange(int(kept.sum())), counts[kept])
    n_new, n_items = int(kept.sum()), index.positions.shape[1]
    clicks = DayClicks(session=session, item=items, offsets=np.array([0, len(items)]))
    new = SessionIndex.from_clicks(
        clicks, np.full(n_new, day), np.full(n_new, TEST), np.full(n_new, time, dtype=np.float64), n_items
    )
    base_rank = int(index.start_rank.max()) + 1 if len(index.start_rank) else 0
    return SessionIndex(
        positions=sp.vstack([index.positions, new.positions], format="csr"),
        day=np.concatenate([index.day, new.day]),
        split=np.concatenate([index.split, new.split]),
        start_rank=np.concatenate([index.start_rank, base_rank + new.start_rank]),
        size=np.concatenate([index.size, new.size]),
        last_time=np.concatenate([index.last_time, new.last_time]),
        train_clicks=index.train_clicks,  # the IDF table stays the training split's
    )


class KNNRecommender(ServedModel):
    """A served SKNN, V-SKNN or STAN: its index, its settings and its item ids (see the module docstring)."""

    files = (artifact.INDEX,)

    def __init__(
        self,
        item_tokens: Any,
        settings: artifact.Settings,
        index: SessionIndex,
        day: int,
        clock: float,
        folded: tuple[str, ...] = (),
    ) -> None:
        model = str(settings["model"])
        if model not in KNN_MODELS:
            raise ValueError(f"{model} is not a kNN model; KNNRecommender serves {', '.join(KNN_MODELS)}")
        self.model_class = KNN_MODELS[model]
        state = IndexState(int(day), tuple(folded), self.model_class.scoring_for(settings, index), float(clock))
        super().__init__(item_tokens, settings, state, int(settings["MAX_ITEM_LIST_LENGTH"]))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str]) -> KNNRecommender:
        """The index of a kNN run, rebuilt from its data set by ``load_data_and_model`` (the checkpoint is a
        pickle and the data set is read: only for your own runs)."""
        from recbole_tasrec.quick_start import load_data_and_model

        logger.info("loading %s with pickle and its data set: trusting that file", path)
        config, model, dataset, *_ = load_data_and_model(path)
        if not isinstance(model, SessionKNN):
            raise ValueError(f"{path} holds a {config['model']} model; KNNRecommender serves {', '.join(KNN_MODELS)}")
        index = model.scoring.index
        tokens = dataset.field2id_token[dataset.iid_field]
        clock = float(np.nanmax(index.last_time)) if np.isfinite(index.last_time).any() else 0.0
        return cls(tokens, artifact.serving_settings(config), index, int(dataset.n_days), clock)

    @classmethod
    def from_artifact(cls, directory: str | os.PathLike[str]) -> KNNRecommender:
        """Load a kNN serving artefact (tensors and JSON only, no pickle)."""
        return cls.from_read(artifact.read_artifact(directory), Path(directory))

    @classmethod
    def from_read(cls, saved: artifact.Artifact, directory: Path, device: Any = "cpu") -> KNNRecommender:
        """Build from an artefact already read and checked (kNN scoring runs on the CPU, ``device`` aside)."""
        saved.require(directory, *cls.files)
        index = index_from_tensors(saved.tensors[artifact.INDEX], saved.meta["n_items"], directory / artifact.INDEX)
        clock = saved.meta["state"].get("clock")
        if not isinstance(clock, int | float) or isinstance(clock, bool):
            raise artifact.ArtifactError(f"{directory / artifact.META}: key 'state.clock' must be a number")
        try:
            return cls(saved.item_tokens, saved.settings, index, saved.meta["day"], clock, tuple(saved.meta["folded"]))
        except ValueError as error:  # a setting the model refuses (k < 1, an unknown weighting): one line
            raise artifact.ArtifactError(f"{directory / artifact.META}: {error}") from error

    @property
    def index(self) -> SessionIndex:
        return self.state.index

    def _score(self, seq: np.ndarray, lengths: np.ndarray, state: IndexState) -> torch.Tensor:
        n = len(lengths)
        return state.scoring.scores(
            torch.from_numpy(seq),
            torch.from_numpy(lengths),
            torch.full((n,), state.day, dtype=torch.int64),
            torch.full((n,), state.clock, dtype=torch.float64),
        )

    def _fold(
        self, base: IndexState, items: np.ndarray, counts: np.ndarray, folded: tuple[str, ...]
    ) -> tuple[IndexState, dict[str, int]]:
        clock = base.clock + SECONDS_PER_DAY
        index = extend_index(base.index, items, counts, base.day, clock)
        scoring = self.model_class.scoring_for(self.settings, index)  # built before the swap
        return IndexState(base.day + 1, folded, scoring, clock), {"indexed_sessions": int((counts > 0).sum())}

    def _files(self, state: IndexState) -> dict[str, dict[str, torch.Tensor]]:
        return {artifact.INDEX: index_tensors(state.index)}

    def _state_meta(self, state: IndexState) -> dict[str, Any]:
        return {"clock": state.clock}
