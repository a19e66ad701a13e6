"""Serving RecBole's sequential models (SRGNN, GRU4Rec, NARM, SASRec, STAMP, GCSAN, ...) and this package's LESSR
and CSRM: item ids in, the model's ``full_sort_predict`` out.

The artefact holds the weights (``weights.pt``: ``state_dict``'s tensors, CSRM's outer memory among them) and in
``meta.json`` the config values the model reads. Loading rebuilds the model from its class, those values and the
item count, without the data set: RecBole's models read only ``dataset.num(ITEM_ID_FIELD)`` of a data set when
they are built (``SequentialRecommender.__init__``), CSRM also ``dataset.day_field``; :class:`ItemTable` answers
exactly these. A model that reads more of its data set is refused in one line.

Requests are scored as samples of day ``day`` (the first day after the data at export). ``advance`` moves the
day on; CSRM (``memory_eval: streaming``) also writes the day's sessions into its outer memory as evaluation's
streaming memory does: each of RecBole's samples of the day (every prefix) is read, staged, and committed once
the day is over, so requests of the next day read them. With ``train`` the weights are trained on the day
(:mod:`~recbole_tasrec.serve.day_training`). The model of a state is never changed once served: an advance
builds a new one aside (a copy) and swaps it in with the state.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from recbole.model.abstract_recommender import SequentialRecommender
from torch import nn

from recbole_tasrec.serve import artifact, day_training
from recbole_tasrec.serve.served import ServedModel, ServedState

logger = logging.getLogger(__name__)

#: the models tested to serve through this class (any other RecBole sequential model is tried, refused in one
#: line if it reads more of a data set than :class:`ItemTable` has)
SEQUENTIAL_MODELS = ("SRGNN", "GRU4Rec", "NARM", "SASRec", "STAMP", "GCSAN", "LESSR", "CSRM")
#: the field of a sample's day, for the models that read one (CSRM)
DAY_FIELD = "day"
#: samples a day's memory write scores at once
WRITE_BATCH = 1024


class ItemTable:
    """The data set a served model is built with: what RecBole's ``SequentialRecommender.__init__`` reads
    (``dataset.num(ITEM_ID_FIELD)``, RecBole 1.2.1 ``model/abstract_recommender.py``) and CSRM's ``day_field``."""

    def __init__(self, n_items: int, item_field: str) -> None:
        self.n_items, self.item_field, self.day_field = n_items, item_field, DAY_FIELD

    def num(self, field: str) -> int:
        if field != self.item_field:
            raise ValueError(f"a served model knows only the item count, not the size of {field!r}")
        return self.n_items


@dataclass(frozen=True)
class ModelState(ServedState):
    """A served sequential model's state: its model (in evaluation mode, never changed once served)."""

    model: nn.Module | None = None


def build_model(settings: artifact.Settings, n_items: int, device: Any = "cpu") -> nn.Module:
    """The model of ``settings["model"]`` built from ``settings`` and the item count alone (:class:`ItemTable`)."""
    from recbole_tasrec.config import get_model

    name = str(settings["model"])
    model_class = get_model(name)
    if not issubclass(model_class, SequentialRecommender) or not hasattr(model_class, "full_sort_predict"):
        raise ValueError(f"{name} is not a sequential model with full_sort_predict: it cannot be served")
    config = artifact.Settings({**settings, "device": torch.device(device)})
    try:
        return model_class(config, ItemTable(n_items, str(settings["ITEM_ID_FIELD"]))).to(device)
    except (AttributeError, KeyError, TypeError) as error:
        raise ValueError(f"{name} cannot be built without its data set ({error}): it cannot be served") from error


def uses_memory(model: nn.Module) -> bool:
    """Whether ``model`` keeps CSRM's streaming outer memory (written by each advance)."""
    return hasattr(model, "memory") and getattr(model, "memory_eval", None) == "streaming"


class NeuralRecommender(ServedModel):
    """A served RecBole sequential model, LESSR or CSRM (see the module docstring)."""

    files = (artifact.WEIGHTS,)
    trains = True

    def __init__(
        self, model: nn.Module, item_tokens: Any, settings: artifact.Settings, day: int, folded: tuple[str, ...] = ()
    ) -> None:
        self.streaming_memory = uses_memory(model)
        state = ModelState(int(day), tuple(folded), self._servable(model, int(day)))
        super().__init__(item_tokens, settings, state, int(settings["MAX_ITEM_LIST_LENGTH"]))

    def _servable(self, model: nn.Module, day: int) -> nn.Module:
        """``model`` ready to answer requests of day ``day`` without changing: in evaluation mode; CSRM's rows of the
        days before committed and its reads made read-only (the streaming read of day ``day``, without staging)."""
        model.eval()
        if hasattr(model, "memory"):
            model.memory.commit_before(torch.tensor(day))
            model.memory_eval = "frozen"
        if hasattr(model, "item_vectors"):
            model.item_vectors()  # LESSR renormalises its table in place on first use: done here, not by a request
        return model

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str]) -> NeuralRecommender:
        """The model of a run, its item ids from its data set by ``load_data_and_model`` (the checkpoint is a
        pickle and the data set is read: only for your own runs)."""
        from recbole_tasrec.checkpoint import load_trusted
        from recbole_tasrec.quick_start import load_data_and_model

        logger.info("loading %s with pickle and its data set: trusting that file", path)
        config, model, dataset, *_ = load_data_and_model(path)
        settings = artifact.serving_settings(config)
        rate = day_training.checkpoint_rate(load_trusted(path, ("state_dict",)))
        settings.update(day_training.training_settings(config, rate))
        tokens = dataset.field2id_token[dataset.iid_field]
        served = build_model(settings, len(tokens))  # the model as a served one is built: the same names
        served.load_state_dict(model.state_dict())
        return cls(served, tokens, settings, int(dataset.n_days))

    @classmethod
    def from_read(cls, saved: artifact.Artifact, directory: Path, device: Any = "cpu") -> NeuralRecommender:
        """Build from an artefact already read and checked."""
        saved.require(directory, *cls.files)
        try:
            model = build_model(saved.settings, saved.meta["n_items"], device)
            model.load_state_dict(saved.tensors[artifact.WEIGHTS])
        except (ValueError, RuntimeError) as error:  # a setting the model refuses, weights of another shape
            message = " ".join(str(error).split())[:300]
            raise artifact.ArtifactError(f"{directory}: {message}") from error
        return cls(model, saved.item_tokens, saved.settings, saved.meta["day"], tuple(saved.meta["folded"]))

    @property
    def model(self) -> nn.Module:
        """The model requests are scored with (swapped whole by an advance that trains)."""
        return self.state.model

    def _score(self, seq: np.ndarray, lengths: np.ndarray, state: ModelState) -> torch.Tensor:
        model = state.model
        batch = day_training.sample_batch(model, seq, lengths, state.day).to(next(model.parameters()).device)
        with torch.no_grad():
            return model.full_sort_predict(batch)

    def _fold(
        self, base: ModelState, items: np.ndarray, counts: np.ndarray, folded: tuple[str, ...]
    ) -> tuple[ModelState, dict[str, int]]:
        if not self.streaming_memory:
            return ModelState(base.day + 1, folded, base.model), {}
        model = copy.deepcopy(base.model)
        seq, lengths, _ = day_training.prefix_samples(items, counts, self.max_seq_length)
        model.memory_eval = "streaming"  # evaluation's write: read, stage the day's rows, commit once it is over
        device = next(model.parameters()).device
        with torch.no_grad():
            for start in range(0, len(lengths), WRITE_BATCH):
                part = slice(start, start + WRITE_BATCH)
                model._session_vectors(day_training.sample_batch(model, seq[part], lengths[part], base.day).to(device))
        return ModelState(base.day + 1, folded, self._servable(model, base.day + 1)), {"memory_rows": len(lengths)}

    def _train(
        self,
        base: ModelState,
        state: ModelState,
        items: np.ndarray,
        counts: np.ndarray,
        options: day_training.TrainOptions,
    ) -> tuple[ModelState, float]:
        """The weights of ``state`` trained on the day. CSRM trains with its memory as the fold left it (the day's
        rows in it, as continual training trains a day once evaluation has written it) and, training, writes
        each batch into it, as any CSRM training does."""
        seq, lengths, targets = day_training.prefix_samples(items, counts, self.max_seq_length)
        samples = day_training.sample_batch(state.model, seq, lengths, base.day, targets)
        trained, loss = day_training.train_copy(state.model, self.settings, samples, base.day, options)
        return ModelState(state.day, state.folded, self._servable(trained, state.day)), loss

    def _files(self, state: ModelState) -> dict[str, dict[str, torch.Tensor]]:
        return {artifact.WEIGHTS: dict(state.model.state_dict())}
