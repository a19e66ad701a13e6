"""A serving artefact that is safe to load: plain tensors and JSON, never a pickle.

A RecBole checkpoint is a pickle (it holds RecBole's ``Config``): loading one runs whatever code the file
names, so it must come from someone you trust. The artefact holds the same serving state as data only::

    DIR/meta.json    format, package version, model, item count, day, digests of the last days folded in, the
                     config values the model reads, the raw item ids, the model's state settings, the SHA-256
                     of each tensor file, and ``meta_sha256``: the SHA-256 of meta.json's own content
    DIR/<file>.pt    torch.save of {name: tensor} (with a header [format, items, day]), read back with
                     torch.load(weights_only=True): TASRec writes weights.pt and graph.pt, the kNN models index.pt

Writing is crash-safe (:func:`~recbole_tasrec.safe_write.atomic_path`): the files go to a hidden temporary folder
next to ``DIR``, are flushed to disk, and the folder is renamed to ``DIR`` (an existing artefact is moved aside
first and removed last), so a crash leaves either the old artefact or the new one. Reading checks that the files
belong together (format, item count, day, checksums), that meta.json is the one written (its checksum covers the
item ids, so two swapped ids are refused) and that each of its values has the right type, and names the file and
key that do not.

Format 1 (before meta.json had a checksum) still loads, with a one-line warning; saving it again (``advance``,
or ``export`` from the checkpoint) writes format 2.
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

from recbole_tasrec.safe_write import atomic_path, glob_escape

logger = logging.getLogger(__name__)

FORMAT = 2
META, WEIGHTS, GRAPH, INDEX = "meta.json", "weights.pt", "graph.pt", "index.pt"
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
SCALARS = (str, int, float, bool, type(None))


class ArtifactError(ValueError):
    """A serving artefact that cannot be read or written; the message says which file and what to do."""


class Settings(dict):
    """Config values for building the model: reads a missing key as ``None``, like RecBole's ``Config``."""

    def __missing__(self, key: str) -> None:
        return None


@dataclass
class Artifact:
    """What a serving artefact holds, checked: meta.json's values and each tensor file's tensors (headers off)."""

    meta: dict[str, Any]
    tensors: dict[str, dict[str, torch.Tensor]]

    @property
    def settings(self) -> Settings:
        return Settings(self.meta["settings"])

    @property
    def item_tokens(self) -> np.ndarray:
        return np.asarray(self.meta["item_tokens"], dtype=str)

    def require(self, directory: Path, *names: str) -> None:
        """Refuse an artefact that lacks one of the tensor files a model needs."""
        missing = [name for name in names if name not in self.tensors]
        if missing:
            raise ArtifactError(f"{directory / META} lists no {missing}: not an artefact of a {self.meta['model']}")


def package_version() -> str:
    from recbole_tasrec import __version__

    return __version__


def model_defaults(model: str) -> dict[str, Any]:
    """``properties/model/<model>.yaml``: every setting the model documents (and reads), with its default; for a
    RecBole model (SRGNN, SASRec, ...) RecBole's own ``properties/model/<model>.yaml``."""
    import recbole

    from recbole_tasrec.config import properties_dir
    from recbole_tasrec.settings import YamlLoader  # reads 1e-12 as a number, as the configuration does

    for folder in (properties_dir(), Path(recbole.__file__).parent / "properties"):
        path = folder / "model" / f"{model}.yaml"
        if path.is_file():
            return dict(yaml.load(path.read_text(), Loader=YamlLoader) or {})  # noqa: S506 - a safe loader
    return {}


def model_keys(model: str) -> list[str]:
    """The keys of ``properties/model/<model>.yaml``."""
    return list(model_defaults(model))


def is_plain(value: Any) -> bool:
    """One JSON scalar, or a flat list of them (NARM's and CSRM's ``dropout_probs``)."""
    return isinstance(value, SCALARS) or (isinstance(value, list) and all(isinstance(v, SCALARS) for v in value))


def serving_settings(config: Any) -> Settings:
    """The config values the model reads, as JSON-friendly values (devices and paths are left out)."""
    keys = [*RECBOLE_KEYS, *model_keys(str(config["model"]))]
    return Settings({key: config[key] for key in dict.fromkeys(keys) if is_plain(config[key])})


def meta_digest(meta: Mapping[str, Any]) -> str:
    """SHA-256 of meta.json's content without its own ``meta_sha256`` (canonical JSON: sorted keys)."""
    content = {key: value for key, value in meta.items() if key != "meta_sha256"}
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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


def write_artifact(
    directory: str | os.PathLike[str], meta: Mapping[str, Any], files: Mapping[str, Mapping[str, torch.Tensor]]
) -> Path:
    """Write an artefact to ``directory`` atomically (a new folder, or an existing artefact replaced).

    ``meta``: ``model``, ``n_items``, ``day``, ``folded``, ``settings``, ``state``, ``item_tokens``; ``files``:
    each tensor file's tensors. The format, version, checksums and header are added here."""
    target = Path(directory)
    if target.exists() and not (target / META).is_file():
        raise ArtifactError(f"{target} exists and is not a serving artefact (no {META}): choose a new folder")
    if len(meta["item_tokens"]) != meta["n_items"]:
        raise ArtifactError(f"{len(meta['item_tokens'])} item ids but the model has {meta['n_items']} items")
    header = torch.tensor([FORMAT, int(meta["n_items"]), int(meta["day"])], dtype=torch.int64)
    with atomic_path(target) as staging:  # staged aside, flushed, then renamed: the old artefact or the new one
        staging.mkdir()
        sha256 = {
            name: _write_tensors(staging / name, {**tensors, "header": header}) for name, tensors in files.items()
        }
        full = {"format": FORMAT, "package_version": package_version(), **meta, "sha256": sha256}
        full["item_tokens"] = [str(token) for token in meta["item_tokens"]]
        full["meta_sha256"] = meta_digest(full)
        (staging / META).write_text(json.dumps(full, ensure_ascii=False), encoding="utf-8")
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


#: meta.json's keys, each with its type and how to say it (format 2; format 1 lacks the last four)
KINDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "format": (int, "an integer"),
    "package_version": (str, "text"),
    "n_items": (int, "an integer"),
    "day": (int, "an integer"),
    "settings": (dict, "an object of settings"),
    "sha256": (dict, "an object of file checksums"),
    "item_tokens": (list, "a list of item ids"),
    "model": (str, "text"),
    "state": (dict, "an object"),
    "folded": (list, "a list of day digests"),
    "meta_sha256": (str, "text"),
}
FORMAT_1_KEYS = ("graph",)


def _bad(path: Path, key: str, what: str) -> ArtifactError:
    return ArtifactError(f"{path}: key {key!r} {what}")


def _check_kinds(path: Path, meta: dict[str, Any], keys: list[str]) -> None:
    missing = [key for key in keys if key not in meta]
    if missing:
        raise ArtifactError(f"{path} lacks {missing}: it is not a complete serving artefact")
    for key in keys:
        kind, said = KINDS.get(key, (dict, "an object"))
        value = meta[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise _bad(path, key, f"must be {said}, got {json.dumps(value)[:60]}")
    strings = {"item_tokens": meta["item_tokens"], "folded": meta.get("folded", [])}
    for key, values in strings.items():
        odd = next((v for v in values if not isinstance(v, str)), None) if isinstance(values, list) else None
        if odd is not None:
            raise _bad(path, key, f"must hold text only, got {json.dumps(odd)[:60]}")
    seen: set[str] = set()
    for token in meta["item_tokens"]:
        if token in seen:
            raise _bad(path, "item_tokens", f"lists the item id {token!r} twice: each id must appear once")
        seen.add(token)


def check_settings(path: Path, settings: dict[str, Any], model: str) -> None:
    """Each setting one value of the type its default has (``properties/model/<model>.yaml``): a list, or text
    where a number belongs, is refused here naming the key, not deep inside the model."""
    defaults = model_defaults(model)
    for key, value in settings.items():
        default = defaults.get(key)
        if isinstance(default, list) and is_plain(value) and isinstance(value, list):
            continue  # a list setting (dropout_probs): its values are checked by the model
        if not isinstance(value, SCALARS):
            raise _bad(path, f"settings.{key}", f"must be one value (text, number, true/false, null), got a "
                       f"{type(value).__name__}")  # fmt: skip
        if default is None or value is None:
            continue
        numbers = (int, float) if isinstance(default, float) else (int,)
        expected = bool if isinstance(default, bool) else numbers if isinstance(default, int | float) else str
        if not isinstance(value, expected) or (isinstance(value, bool) and not isinstance(default, bool)):
            raise _bad(path, f"settings.{key}", f"must be {type(default).__name__} like its default "
                       f"{default!r}, got {json.dumps(value)}")  # fmt: skip


def _read_meta(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        copies = [p for p in directory.parent.glob(f".{glob_escape(directory.name)}.tmp-*") if (p / META).is_file()]
        hint = f"; an interrupted save left a copy at {copies[-1]}: rename it to {directory.name}" if copies else ""
        raise ArtifactError(f"no serving artefact at {directory}{hint}")
    path = directory / META
    if not path.is_file():
        raise ArtifactError(f"{directory} lacks {META}: it is not a complete serving artefact")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{path} is not valid JSON ({error})") from error
    if not isinstance(meta, dict) or not isinstance(meta.get("format"), int) or meta["format"] not in (1, FORMAT):
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ArtifactError(f"{directory} has artefact format {found!r}; this package reads 1 and {FORMAT}")
    if meta["format"] == 1:
        meta = _upgrade_format_1(directory, path, meta)
    else:
        _check_kinds(path, meta, list(KINDS))
        if meta["meta_sha256"] != meta_digest(meta):
            raise ArtifactError(
                f"{path} does not match its own checksum (meta_sha256): it was edited after it was written; "
                "export the artefact again from your checkpoint"
            )
    if meta["settings"].get("model", meta["model"]) != meta["model"]:
        raise _bad(path, "settings.model", f"is {meta['settings']['model']!r} but the artefact is a {meta['model']}")
    check_settings(path, meta["settings"], meta["model"])
    if meta["package_version"] != package_version():
        logger.info("%s was written by recbole-tasrec %s (this is %s)", directory, meta["package_version"],
                    package_version())  # fmt: skip
    return meta


def _upgrade_format_1(directory: Path, path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """A format-1 meta.json (a TASRec's, no checksum of its own) in format 2's shape, with a one-line warning."""
    _check_kinds(path, meta, [*list(KINDS)[:7], *FORMAT_1_KEYS])
    logger.warning(
        "%s is artefact format 1: its meta.json has no checksum of its own; loaded as is, save it again "
        "(advance, or export from the checkpoint) to write format %d",
        directory,
        FORMAT,
    )
    return {**meta, "model": "TASRec", "state": meta.pop("graph"), "folded": []}


def _check_files(directory: Path, meta: dict[str, Any], tensors: dict[str, dict[str, torch.Tensor]]) -> None:
    """The files must describe one model at one day: say which one disagrees."""
    n_items, day = meta["n_items"], meta["day"]
    if len(meta["item_tokens"]) != n_items:
        raise ArtifactError(f"{META} lists {len(meta['item_tokens'])} item ids but says n_items={n_items}")
    for name, loaded in tensors.items():
        header = loaded.pop("header", None)
        if header is None:
            if meta["format"] == 1 and name == WEIGHTS:  # format 1 wrote its weights without a header
                continue
            raise ArtifactError(f"{directory / name} has no header: it is not a tensor file written by this package")
        fmt, items, its_day = header.tolist()
        if fmt != meta["format"] or items != n_items:
            raise ArtifactError(f"{name} is a file of {items} items (format {fmt}); {META} says {n_items}")
        if its_day != day:
            raise ArtifactError(
                f"{name} is the state after day {its_day} but {META} says day {day}: files of two saves"
            )
    for name in tensors:
        if _sha256(directory / name) != meta["sha256"][name]:
            raise ArtifactError(f"{name} does not match the checksum in {META}: the folder mixes files of two saves")


def read_artifact(directory: str | os.PathLike[str]) -> Artifact:
    """Read and check an artefact written by :func:`write_artifact` (never unpickles anything)."""
    directory = Path(directory)
    meta = _read_meta(directory)
    tensors = {}
    for name in meta["sha256"]:
        if not isinstance(name, str) or not re.fullmatch(r"\w+\.pt", name) or not (directory / name).is_file():
            raise ArtifactError(f"{directory} lacks {name}: it is not a complete serving artefact")
        tensors[name] = _load_tensors(directory / name)
    _check_files(directory, meta, tensors)
    return Artifact(meta, tensors)
