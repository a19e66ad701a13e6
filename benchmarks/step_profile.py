"""Where a TASRec training step goes, and the arithmetic floor of a step at the same shapes.

Used by ``bench_training.py`` inside its TASRec worker, after the timed steps (so neither changes the
recorded speed or peak memory). The profile wraps the model's own methods and submodules with timers: no
copy of the forward pass, so it measures exactly the code a user trains. Nested parts are reported
exclusive of what they contain (the session graph part is ``session_states`` less the GGNN inside it).
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from recbole_tasrec.model.full_softmax import full_softmax_cross_entropy

#: (part, how it is derived) in the order of a step
PARTS = (
    ("data", "fetching and assembling the batch (the loader's __next__)"),
    ("session graph", "session_states less the GGNN: build_session_graphs, embedding lookup, gather"),
    ("session GGNN", "SessionGGNN.forward"),
    ("temporal GCN", "temporal_states: the day's P (cached), the GCN of Eq. 2-3, Eq. 4's normalisation"),
    ("readout", "AttentionReadout.packed (Eq. 6-7)"),
    ("other forward", "the rest of forward: the real positions, Eq. 5's dropout, the last position"),
    ("output layer + loss", "calculate_loss less forward: s X^T over all items and the cross-entropy"),
    ("backward", "loss.backward()"),
    ("optimiser", "optimizer.step() (and zero_grad)"),
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Timers:
    """Accumulates wall time per name for callables wrapped with :meth:`wrap` (instance attributes only)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.ms: dict[str, float] = defaultdict(float)

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        inner: Callable[..., Any] = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            _sync(self.device)
            tick = time.perf_counter()
            out = inner(*args, **kwargs)
            _sync(self.device)
            self.ms[name] += 1000 * (time.perf_counter() - tick)
            return out

        setattr(owner, attr, timed)

    def lap(self, name: str, fn: Callable[[], Any]) -> Any:
        _sync(self.device)
        tick = time.perf_counter()
        out = fn()
        _sync(self.device)
        self.ms[name] += 1000 * (time.perf_counter() - tick)
        return out


def _step_parts(raw: dict[str, float]) -> dict[str, float]:
    """Exclusive times from the wrapped (inclusive) ones."""
    forward = raw["forward"]
    session = raw.get("session_states", 0.0)
    ggnn, gcn, readout = raw.get("session GGNN", 0.0), raw.get("temporal GCN", 0.0), raw.get("readout", 0.0)
    return {
        "data": raw["data"],
        "session graph": session - ggnn,
        "session GGNN": ggnn,
        "temporal GCN": gcn,
        "readout": readout,
        "other forward": forward - session - gcn - readout,
        "output layer + loss": raw["loss"] - forward,
        "backward": raw["backward"],
        "optimiser": raw["optimiser"],
    }


def profile_tasrec(
    model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterator[Any], steps: int, device: Any
) -> dict[str, Any]:
    """Median ms per part over ``steps`` training steps of ``model`` (a TASRec), and the median whole step."""
    device = torch.device(device)
    per_step: list[dict[str, float]] = []
    totals: list[float] = []
    try:
        for _ in range(steps):
            timers = _Timers(device)
            timers.wrap(model, "session_states", "session_states")
            timers.wrap(model.session_gnn, "forward", "session GGNN")
            timers.wrap(model, "temporal_states", "temporal GCN")
            timers.wrap(model.readout, "packed", "readout")
            timers.wrap(model, "_session_vectors", "forward")
            tick = time.perf_counter()
            interaction = timers.lap("data", lambda: next(batches).to(device))
            optimizer.zero_grad()
            loss = timers.lap("loss", lambda interaction=interaction: model.calculate_loss(interaction))
            loss.item()
            timers.lap("backward", loss.backward)
            timers.lap("optimiser", optimizer.step)
            totals.append(1000 * (time.perf_counter() - tick))
            per_step.append(_step_parts(timers.ms))
            _unwrap(model)
    finally:
        _unwrap(model)
    parts = {name: round(statistics.median(s[name] for s in per_step), 3) for name, _ in PARTS}
    return {
        "steps": steps,
        "ms_median": parts,
        "ms_step_median": round(statistics.median(totals), 3),
        "parts_explained": dict(PARTS),
    }


def _unwrap(model: nn.Module) -> None:
    """Drop the timing wrappers (instance attributes), so the class's methods are used again."""
    for name in ("session_states", "temporal_states", "_session_vectors"):
        model.__dict__.pop(name, None)
    model.session_gnn.__dict__.pop("forward", None)
    model.readout.__dict__.pop("packed", None)


class FloorModel(nn.Module):
    """The least a step can do at TASRec's shapes: an embedding lookup of the session, one ``d x d`` linear,
    the output layer over all items with the same table and softmax cross-entropy, computed as TASRec
    computes them (:func:`full_softmax_cross_entropy`, the fastest we have), then the same Adam."""

    def __init__(self, n_items: int, embedding_size: int) -> None:
        super().__init__()
        self.item_embedding = nn.Embedding(n_items, embedding_size, padding_idx=0)
        self.linear = nn.Linear(embedding_size, embedding_size)

    def forward(self, item_seq: Tensor, target: Tensor) -> Tensor:
        s = self.linear(self.item_embedding(item_seq).sum(1))
        return full_softmax_cross_entropy(s, self.item_embedding.weight, target)


def floor_steps(
    n_items: int,
    embedding_size: int,
    optimizer_options: dict[str, Any],
    batches: Iterator[Any],
    fields: tuple[str, str],
    steps: int,
    warmup: int,
    device: Any,
) -> dict[str, Any]:
    """Mean and median ms of the floor step on the same loader's batches, data fetching included."""
    device = torch.device(device)
    model = FloorModel(n_items, embedding_size).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, **optimizer_options)
    seq_field, target_field = fields
    times: list[float] = []
    for step in range(warmup + steps):
        _sync(device)
        tick = time.perf_counter()
        interaction = next(batches).to(device)
        optimizer.zero_grad()
        loss = model(interaction[seq_field], interaction[target_field])
        loss.item()
        loss.backward()
        optimizer.step()
        _sync(device)
        if step >= warmup:
            times.append(1000 * (time.perf_counter() - tick))
    return {
        "steps": steps,
        "ms_per_step_mean": round(statistics.fmean(times), 3),
        "ms_per_step_median": round(statistics.median(times), 3),
        "optimizer": f"torch.optim.Adam {optimizer_options or '(per-tensor)'}",
    }


def endless(loader: Any) -> Iterator[Any]:
    """The loader's batches, epoch after epoch."""
    while True:
        yield from loader
