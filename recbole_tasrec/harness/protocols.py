"""What each model may know at test time: the harness's protocols, and what a run's settings let it see.

A model scores a test sample of day ``t`` with up to four things that can have learned from data: its weights, and
(for some models) TASRec's temporal graph, a kNN model's index of past sessions, CSRM's outer memory. Under the
package's defaults the last three advance through the validation and test days while the weights stay as training
left them, so a comparison of models is also a comparison of what they were shown. A protocol sets, for every model,
the keys that decide it (``PROTOCOL_KEYS``); :func:`information_seen` reads a run's effective settings back into
words, so a report says what each model saw whatever the protocol's name promised.

The split (``docs/protocol.md``): the training days hold the training sessions and, after them, the validation
sessions (the latest ``valid_session_ratio`` of the training days' sessions); the test days follow.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from recbole_tasrec.model.csrm import CSRM
from recbole_tasrec.model.session_knn import SessionKNN
from recbole_tasrec.model.tasrec import TASRec

TRAINING = "training sessions"
WITH_VALIDATION = "training + validation sessions"
STREAMING = "training + validation sessions + each finished test day"
#: the parts of a model that hold what it learned from data, in report order
PARTS = ("weights", "graph", "index", "memory")

#: ``--protocol``: the keys it sets (each only for the models that read it) and what it means
PROTOCOLS: dict[str, tuple[dict[str, Any], str]] = {
    "paper": (
        {"continual": "off", "temporal_eval": "streaming", "knn_streaming": True, "memory_eval": "streaming"},
        "the package's defaults, the paper's protocol: TASRec's graph, the kNN index and CSRM's memory advance "
        "through the validation and test days; the weights stay as training left them",
    ),
    "frozen": (
        {"continual": "off", "temporal_eval": "frozen", "knn_streaming": False, "memory_eval": "frozen"},
        "nothing advances after training: the weights, CSRM's memory and the kNN index of the training sessions, "
        "TASRec's graph of the training days (the validation sessions lie in them)",
    ),
    "streaming": (
        {"continual": "daily", "temporal_eval": "streaming", "knn_streaming": True, "memory_eval": "streaming"},
        "everything advances: the graph, the kNN index and CSRM's memory, and the weights train on the "
        "validation samples and then on each test day once it has been scored (continual: daily)",
    ),
}
BOTH = ("frozen", "streaming")
DEFAULT_PROTOCOL = "paper"

#: whether this version of the package trains during the test phase (``continual: refit | daily``); without it
#: the key is kept in the settings but does nothing
CONTINUAL_IMPLEMENTED = importlib.util.find_spec("recbole_tasrec.continual") is not None


def has_graph(model_class: type) -> bool:
    return issubclass(model_class, TASRec)


def protocol_settings(protocol: str, model_class: type) -> dict[str, Any]:
    """The keys of ``protocol`` that ``model_class`` reads: ``continual`` for a model that trains,
    ``temporal_eval`` for TASRec and its ablations, ``knn_streaming`` for the kNN models, ``memory_eval`` for CSRM."""
    keys, _ = PROTOCOLS[protocol]
    reads = {
        "continual": getattr(model_class, "trains", True),
        "temporal_eval": has_graph(model_class),
        "knn_streaming": issubclass(model_class, SessionKNN),
        "memory_eval": issubclass(model_class, CSRM),
    }
    return {key: value for key, value in keys.items() if reads[key]}


def information_seen(
    config: Mapping[str, Any], model_class: type, continual_implemented: bool = CONTINUAL_IMPLEMENTED
) -> dict[str, str]:
    """What each part of a model (``PARTS``: only those it has) had seen when it scored a test day, from the run's
    effective settings ``config`` (a final config dict): :data:`TRAINING`, :data:`WITH_VALIDATION` or
    :data:`STREAMING`.

    - weights: ``continual`` off, refit, daily (``off`` where the package does not implement it);
    - graph (TASRec with its temporal graph): ``temporal_eval: frozen`` stops at the graph of the training days,
      which holds the validation sessions' clicks; ``streaming`` advances;
    - index (kNN): ``knn_streaming: False`` holds the training split only;
    - memory (CSRM): ``memory_eval: streaming`` advances; ``frozen`` keeps what training wrote, and continual
      training writes too (a training batch is appended to the memory), so it holds what the weights saw.
    """
    mode = config.get("continual") if continual_implemented else "off"
    mode = "off" if mode is None or mode is False else mode  # YAML reads a bare off as False
    weights = {"off": TRAINING, "refit": WITH_VALIDATION, "daily": STREAMING}.get(mode)
    if weights is None:
        raise ValueError(f"continual must be one of off, refit, daily; got {config.get('continual')!r}")
    seen = {}
    if getattr(model_class, "trains", True):
        seen["weights"] = weights
    if has_graph(model_class) and config.get("use_temporal_graph", True) is not False:
        seen["graph"] = WITH_VALIDATION if config.get("temporal_eval") == "frozen" else STREAMING
    if issubclass(model_class, SessionKNN):
        seen["index"] = TRAINING if config.get("knn_streaming") is False else STREAMING
    if issubclass(model_class, CSRM):
        seen["memory"] = weights if config.get("memory_eval") == "frozen" else STREAMING
    return seen
