"""A serving artefact that is safe to load: plain tensors and JSON, never a pickle.

A RecBole checkpoint is a pickle (it holds RecBole's ``Config``): loading one runs whatever code the file
names, so it must come from someone you trust. The artefact holds the same serving state as data only::

    DIR/meta.json    format, package version, item count, graph day, the config values the model reads,
                     the raw item ids, the temporal graph's settings and the SHA-256 of each tensor file
    DIR/weights.pt   torch.save of {parameter name: tensor}, read back with torch.load(weights_only=True)
    DIR/graph.pt     torch.save of the temporal graph E_day as CSR tensors plus a header [format, items, day]

Writing is crash-safe (:func:`~recbole_tasrec.safe_write.atomic_path`): the files go to a hidden temporary folder
next to ``DIR``, are flushed to disk, and the folder is renamed to ``DIR`` (an existing artefact is moved aside
first and removed last), so a crash leaves either the old artefact or the new one. Reading checks that the three
files belong together (format, item count, day, checksums) and names the file that does not.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from recbole_tasrec.data.temporal_graph import TemporalGraph
from recbole_tasrec.safe_write import atomic_path, glob_escape

logger = logging.getLogger(__name__)

FORMAT = 1
META, WEIGHTS, GRAPH = "meta.json", "weights.pt", "graph.pt"
#: RecBole's own config values that ``SequentialRecommender.__init__`` reads, besides the model's yaml keys.
RECBOLE_KEYS = (
    "model",
    "USER_ID_FIELD",
    "ITEM_ID_FIELD",
    "LIST_SUFFIX",
    "ITEM_LIST_LENGTH_FIELD",
    "NEG_PREFIX",
    "MAX_ITEM_LIST_LENGTH",
)


class ArtifactError(ValueError):
    """A serving artefact that cannot be read or written; the message says which file and what to do."""


class Settings(dict):
    """Config values for building the model: reads a missing key as ``None``, like RecBole's ``Config``."""

    def __missing__(self, key: str) -> None:
        return None


@dataclass
class Artifact:
    """What a serving artefact holds, checked and ready to build a ``SessionRecommender`` from."""

    settings: Settings
    item_tokens: np.ndarray
    weights: dict[str, torch.Tensor]
    graph: TemporalGraph


def package_version() -> str:
    from recbole_tasrec import __version__

    return __version__


def model_keys(model: str) -> list[str]:
    """The keys of ``properties/model/<model>.yaml``: every setting the model documents (and reads)."""
    from recbole_tasrec.config import properties_dir

    path = properties_dir() / "model" / f"{model}.yaml"
    return list(yaml.safe_load(path.read_text()) or {}) if path.is_file() else []


def serving_settings(config: Any) -> Settings:
    """The config values the model reads, as JSON-friendly scalars (devices and paths are left out)."""
    keys = [*RECBOLE_KEYS, *model_keys(str(config["model"]))]
    plain = (str, int, float, bool, type(None))
    return Settings({key: config[key] for key in dict.fromkeys(keys) if isinstance(config[key], plain)})


# --- writing ---------------------------------------------------------------------------------------------
def _write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> str:
    """``torch.save`` plain tensors (flushed to disk with their folder by ``atomic_path``); returns the SHA-256."""
    torch.save({name: t.detach().cpu().contiguous() for name, t in tensors.items()}, path)
    return _sha256(path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _graph_tensors(graph: TemporalGraph) -> dict[str, torch.Tensor]:
    state = graph.state_dict()
    return {
        "header": torch.tensor([FORMAT, graph.n_items, graph.day], dtype=torch.int64),
        "indptr": torch.from_numpy(state["indptr"]),
        "indices": torch.from_numpy(state["indices"]),
        "data": torch.from_numpy(state["data"]),
    }


def write_artifact(
    directory: str | os.PathLike[str],
    settings: Mapping[str, Any],
    item_tokens: np.ndarray,
    weights: Mapping[str, torch.Tensor],
    graph: TemporalGraph,
) -> Path:
    """Write an artefact to ``directory`` atomically (a new folder, or an existing artefact replaced)."""
    target = Path(directory)
    if target.exists() and not (target / META).is_file():
        raise ArtifactError(f"{target} exists and is not a serving artefact (no {META}): choose a new folder")
    if len(item_tokens) != graph.n_items:
        raise ArtifactError(f"{len(item_tokens)} item ids but the temporal graph has {graph.n_items} items")
    with atomic_path(target) as staging:  # staged aside, flushed, then renamed: the old artefact or the new one
        staging.mkdir()
        meta = {
            "format": FORMAT,
            "package_version": package_version(),
            "n_items": int(graph.n_items),
            "day": int(graph.day),
            "settings": dict(settings),
            "graph": {
                "decay": graph.decay,
                "edge_weight": graph.edge_weight,
                "prune_below": graph.prune_below,
                "padding_idx": graph.padding_idx,
            },
            "sha256": {
                WEIGHTS: _write_tensors(staging / WEIGHTS, dict(weights)),
                GRAPH: _write_tensors(staging / GRAPH, _graph_tensors(graph)),
            },
            "item_tokens": [str(token) for token in item_tokens],
        }
        (staging / META).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    return target


# --- reading ---------------------------------------------------------------------------------------------
def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)  # data only: never runs code
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same clear message
        # torch's own message advises weights_only=False, the one thing not to do with a file from elsewhere
        named = re.search(r"GLOBAL (\S+)", str(error)) if isinstance(error, pickle.UnpicklingError) else None
        if named:
            raise ArtifactError(
                f"{path} holds Python objects ({named[1]}), not only tensors: refused unread; an artefact is plain "
                "tensors, export it again from a checkpoint you trust: python -m recbole_tasrec.serve export"
            ) from None
        raise ArtifactError(
            f"{path} is not a tensor file written by this package (truncated, or another format)"
        ) from None
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ArtifactError(f"{path} does not hold a dict of tensors")
    return loaded


def _read_meta(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        copies = [p for p in directory.parent.glob(f".{glob_escape(directory.name)}.tmp-*") if (p / META).is_file()]
        hint = f"; an interrupted save left a copy at {copies[-1]}: rename it to {directory.name}" if copies else ""
        raise ArtifactError(f"no serving artefact at {directory}{hint}")
    for name in (META, WEIGHTS, GRAPH):
        if not (directory / name).is_file():
            raise ArtifactError(f"{directory} lacks {name}: it is not a complete serving artefact")
    try:
        meta = json.loads((directory / META).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{directory / META} is not valid JSON ({error})") from error
    required = {"format", "package_version", "n_items", "day", "settings", "graph", "sha256", "item_tokens"}
    if not isinstance(meta, dict) or required - set(meta):
        raise ArtifactError(
            f"{directory / META} lacks {sorted(required - set(meta if isinstance(meta, dict) else {}))}"
        )
    kinds = {"n_items": int, "day": int, "settings": dict, "graph": dict, "sha256": dict, "item_tokens": list}
    wrong = [key for key, kind in kinds.items() if not isinstance(meta[key], kind)]
    if wrong:
        raise ArtifactError(f"{directory / META} has values of the wrong type for {wrong}")
    if meta["format"] != FORMAT:
        raise ArtifactError(f"{directory} has artefact format {meta['format']!r}; this package reads {FORMAT}")
    if meta["package_version"] != package_version():
        logger.info("%s was written by recbole-tasrec %s (this is %s)", directory, meta["package_version"],
                    package_version())  # fmt: skip
    return meta


def _check_agreement(directory: Path, meta: dict[str, Any], weights: dict[str, Any], header: list[int]) -> None:
    """The three files must describe one model at one day: say which one disagrees."""
    n_items, day = meta["n_items"], meta["day"]
    if len(meta["item_tokens"]) != n_items:
        raise ArtifactError(f"{META} lists {len(meta['item_tokens'])} item ids but says n_items={n_items}")
    embedding = weights.get("item_embedding.weight")
    if embedding is None or embedding.shape[0] != n_items:
        rows = None if embedding is None else embedding.shape[0]
        raise ArtifactError(f"{WEIGHTS} has an item table of {rows} rows but {META} says {n_items} items")
    if header[0] != FORMAT or header[1] != n_items:
        raise ArtifactError(f"{GRAPH} is a graph of {header[1]} items (format {header[0]}); {META} says {n_items}")
    if header[2] != day:
        raise ArtifactError(f"{GRAPH} is the graph after day {header[2]} but {META} says day {day}: files of two saves")
    for name in (WEIGHTS, GRAPH):
        if _sha256(directory / name) != meta["sha256"].get(name):
            raise ArtifactError(f"{name} does not match the checksum in {META}: the folder mixes files of two saves")


def read_artifact(directory: str | os.PathLike[str]) -> Artifact:
    """Read and check an artefact written by :func:`write_artifact` (never unpickles anything)."""
    directory = Path(directory)
    meta = _read_meta(directory)
    weights = _load_tensors(directory / WEIGHTS)
    graph_tensors = _load_tensors(directory / GRAPH)
    if "header" not in graph_tensors:
        raise ArtifactError(f"{directory / GRAPH} has no header: it is not a graph written by this package")
    _check_agreement(directory, meta, weights, graph_tensors["header"].tolist())
    state = {name: graph_tensors[name].numpy() for name in ("indptr", "indices", "data") if name in graph_tensors}
    state.update(meta["graph"], n_items=meta["n_items"], day=meta["day"])
    try:
        graph = TemporalGraph.from_state_dict(state)
    except ValueError as error:
        raise ArtifactError(f"{directory / GRAPH}: {error}") from error
    tokens = np.asarray(meta["item_tokens"], dtype=str)
    return Artifact(Settings(meta["settings"]), tokens, weights, graph)
