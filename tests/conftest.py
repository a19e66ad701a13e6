"""Shared fixtures: tiny generated data sets in temporary folders, settings that keep runs small, the tiny set's
processed split built once per settings (:func:`tiny_split`) and one trained TASRec checkpoint for the session
(:func:`trained_tasrec`).

Nothing a test runs writes into the checkout: every run's ``run_dir`` is a temporary folder. What the session
fixtures hand out is shared: a test that changes a data set or a model builds its own (``TinySplit.model()``
builds a fresh model every call).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from recbole_tasrec.data.synthetic import SyntheticConfig, write

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

#: A small drifting log: 14 days, 60 sessions a day, 150 items.
TINY = SyntheticConfig(n_items=150, sessions_per_day=60, n_days=14, seed=3)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data_path holding the ``tiny`` data set."""
    root = tmp_path_factory.mktemp("atomic")
    write(TINY, root, "tiny")
    return root


def small_settings(data_dir: Path, run_dir: Path, **overrides: object) -> dict[str, object]:
    """Settings for a fast run on the tiny data set."""
    settings: dict[str, object] = {
        "data_path": str(data_dir),
        "run_dir": str(run_dir),
        "show_progress": False,
        "state": "WARNING",
        "epochs": 1,
        "embedding_size": 16,
        "hidden_size": 16,
        "n_layers": 1,
        "train_batch_size": 64,
        "eval_batch_size": 256,
        "seed": 7,
    }
    settings.update(overrides)
    return settings


@dataclass(frozen=True)
class TinySplit:
    """A model's config and processed split of the ``tiny`` set (``small_settings`` and overrides)."""

    settings: dict[str, object]
    config: Any
    data: Any  # recbole_tasrec.quick_start.PreparedData

    def model(self) -> torch.nn.Module:
        """A fresh model on this split, seeded by the config, as a run builds it."""
        from recbole_tasrec.quick_start import build_model

        return build_model(self.config, self.data.train)


@pytest.fixture(scope="session")
def tiny_split(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., TinySplit]:
    """``tiny_split(model="TASRec", **overrides)``: the tiny set's split for ``model``, processed once per
    model and settings in the session. Runs that train on it pass their own ``run_dir``."""
    from recbole_tasrec.config import Config
    from recbole_tasrec.quick_start import prepare_data

    built: dict[tuple, TinySplit] = {}

    def make(model: str = "TASRec", **overrides: object) -> TinySplit:
        key = (model, *sorted((name, repr(value)) for name, value in overrides.items()))
        if key not in built:
            settings = small_settings(data_dir, tmp_path_factory.mktemp("split"), **overrides)
            config = Config(model, "tiny", config_dict=settings)
            built[key] = TinySplit(settings, config, prepare_data(config))
        return built[key]

    return make


@dataclass(frozen=True)
class TrainedRun:
    """One finished run: its settings, its ``run_dir`` and what ``run_recbole_tasrec`` returned."""

    settings: dict[str, object]
    run_dir: Path
    result: dict[str, Any]

    @property
    def checkpoint(self) -> str:
        return self.result["checkpoint"]


@pytest.fixture(scope="session")
def trained_tasrec(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """One epoch of TASRec on the tiny set with ``small_settings`` (seed 7), trained once for the session: the
    "trained model" of the serving, reloading and determinism tests. Read its checkpoint, never write it."""
    from recbole_tasrec.quick_start import run_recbole_tasrec

    run_dir = tmp_path_factory.mktemp("trained-tasrec")
    settings = small_settings(data_dir, run_dir)
    return TrainedRun(settings, run_dir, run_recbole_tasrec("TASRec", "tiny", config_dict=settings))


def most_popular_recall(prepared: Any, k: int = 20) -> float:
    """Test Recall@k of recommending the k most frequent training targets to everyone (a ``PreparedData``):
    the floor that a model which learned anything clears."""
    iid = prepared.dataset.iid_field
    counts = np.bincount(prepared.train.inter_feat[iid].numpy(), minlength=prepared.dataset.item_num)
    popular = np.argsort(-counts, kind="stable")[:k]
    return float(np.isin(prepared.test.inter_feat[iid].numpy(), popular).mean())


def most_popular_recall_at_20(model: str, dataset: str, settings: dict[str, Any]) -> float:
    """:func:`most_popular_recall` on the split that ``run_recbole_tasrec(model, dataset, config_dict=settings)``
    trains and tests on."""
    from recbole_tasrec import prepare_data
    from recbole_tasrec.config import Config

    return most_popular_recall(prepare_data(Config(model, dataset, config_dict=settings)))


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The tests' models are tiny: one intra-op thread is several times faster than two on a 2-core machine,
    where two threads fight over the cores with everything else."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    """One private local Ray with 2 CPUs for every in-process sweep of the session, started by the first test that
    asks (a start costs about 20 s on 2 cores); the sweep command and the harness reuse a started Ray."""
    import ray

    from recbole_tasrec.tune.ray_env import init_ray

    env_before = set(os.environ)
    init_ray(num_cpus=2)
    yield
    ray.shutdown()
    for key in set(os.environ) - env_before:  # init_ray's token and Ray's own variables
        del os.environ[key]


@contextlib.contextmanager
def served(app: Any, log_level: str = "warning") -> Iterator[int]:
    """Serve an ASGI ``app`` with uvicorn on a free port of 127.0.0.1 in a thread; yields the port."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level=log_level))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def assert_learns_demo_set_and_checkpoint_rescores(model: str, settings: dict[str, Any], factor: float) -> None:
    """Train ``model`` on the demo set: the loss falls, test Recall@20 beats ``factor`` x most-popular's, and the
    best checkpoint, loaded and evaluated again, gives the same test metrics (models with state beyond weights,
    such as CSRM's memory, must carry it in the checkpoint)."""
    from recbole_tasrec import load_data_and_model, run_recbole_tasrec
    from recbole_tasrec.trainer import TASRecTrainer

    result = run_recbole_tasrec(model, "sample", config_dict=settings)
    assert result["train_loss"][1] < result["train_loss"][0]
    popular = most_popular_recall_at_20(model, "sample", settings)
    assert result["test_result"]["recall@20"] > factor * popular

    config, loaded, _, _, _, test_data = load_data_and_model(result["checkpoint"])
    again = TASRecTrainer(config, loaded).evaluate(test_data, load_best_model=False, show_progress=False)
    assert {k: float(v) for k, v in again.items()} == pytest.approx(result["test_result"], abs=1e-6)


def first_test_samples(test_data: Any, dataset: Any, model: Any, n: int) -> tuple[Any, list[list[str]]]:
    """The first ``n`` test samples and their sessions as raw item ids: what a served model is asked, and the batch
    its source model scores for comparison."""
    batch = test_data._dataset.inter_feat[torch.arange(n)]
    return batch, sessions_of(batch, model, dataset.field2id_token[dataset.iid_field])


def sessions_of(batch: Any, model: Any, tokens: Any) -> list[list[str]]:
    """The raw item ids of each padded session of a batch of samples (what a served model is asked)."""
    seq, lengths = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    return [[str(tokens[i]) for i in seq[row, : lengths[row]].tolist()] for row in range(len(seq))]
