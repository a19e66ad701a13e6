"""Training over several processes: day batches split across ranks, sharded evaluation whose gathered
metrics equal one process's, rank-0 checkpoints that load in one process, and the launch settings.

The runs use Gloo on CPUs with 2 processes (marked slow); one spawn serves every multi-process check.
"""

from __future__ import annotations

import socket
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from recbole_tasrec import distributed, run_recbole_tasrec
from recbole_tasrec.config import Config
from recbole_tasrec.data.dataloader import DayBatchSampler
from recbole_tasrec.distributed.sharding import EvalShardSampler
from recbole_tasrec.quick_start import load_data_and_model
from recbole_tasrec.trainer import ScheduledTrainer
from tests.conftest import small_settings

SEEDS = (1, 2, 3)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


# --- what each rank trains on and evaluates ----------------------------------------------------------
def rank_epochs(days: torch.Tensor, batch_size: int, world_size: int) -> list[list[list[int]]]:
    """One epoch of every rank's batches, each rank with its own generator seeded alike (as in a run)."""
    return [
        list(DayBatchSampler(days, batch_size, True, "shuffle", torch.Generator().manual_seed(5), r, world_size))
        for r in range(world_size)
    ]


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_split_each_day_batch_and_see_every_sample_once(world_size: int) -> None:
    days = torch.tensor([0] * 9 + [1] * 4 + [2] * 7 + [3] * 8)  # remainders 1, 4, 3, 4 against batch 4
    epochs = rank_epochs(days, batch_size=4, world_size=world_size)
    lengths = {len(e) for e in epochs}
    assert lengths == {len(DayBatchSampler(days, 4, True, "shuffle", torch.Generator(), 0, world_size))}
    for step in zip(*epochs, strict=True):
        assert all(step), "no rank may get an empty part"
        assert len({int(days[i]) for part in step for i in part}) == 1  # every rank on the same day
        assert max(map(len, step)) - min(map(len, step)) <= 1
    seen = sorted(i for e in epochs for batch in e for i in batch)
    assert seen == list(range(len(days)))


def test_one_rank_keeps_the_one_process_batches() -> None:
    days = torch.arange(6).repeat_interleave(6)  # remainders of 2 against batch 4: nothing to merge
    one = list(DayBatchSampler(days, 4, True, "shuffle", torch.Generator().manual_seed(5)))
    assert rank_epochs(days, 4, 1)[0] == one
    assert [a + b for a, b in zip(*rank_epochs(days, 4, 2), strict=True)] == one


def test_a_day_smaller_than_the_world_is_padded_with_its_own_samples() -> None:
    days = torch.tensor([0, 1, 1, 1, 1])
    epochs = rank_epochs(days, batch_size=4, world_size=3)
    day0 = [[batch for batch in e if days[batch[0]] == 0] for e in epochs]
    assert [b for e in day0 for b in e] == [[0], [0], [0]]


@pytest.mark.parametrize("n", [1, 9, 10, 11])
def test_eval_shards_are_the_one_process_batches_in_order(n: int) -> None:
    one = list(EvalShardSampler(n, 3, 0, 1))
    assert [i for b in one for i in b] == list(range(n))
    shards = [list(EvalShardSampler(n, 3, r, 2)) for r in range(2)]
    assert shards[0] + shards[1] == one


# --- launch settings --------------------------------------------------------------------------------
def config_with(**settings: Any) -> Config:
    return Config("TASRec", "sample", config_dict={"state": "WARNING", **settings})


def test_launch_settings_from_flags_and_torchrun() -> None:
    assert distributed.launch_settings(config_with(), environ={}) is None
    assert distributed.launch_settings(config_with(nproc=2), environ={}) == {
        "nproc": 2,
        "world_size": 2,
        "ip": "localhost",
        "port": 5678,
        "offset": 0,
    }
    machines = distributed.launch_settings(config_with(nproc=2, world_size=4, ip="10.0.0.1", offset=2), environ={})
    assert (machines["world_size"], machines["ip"], machines["offset"]) == (4, "10.0.0.1", 2)
    env = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"}
    env |= {"MASTER_ADDR": "h", "MASTER_PORT": "29500"}
    assert distributed.launch_settings(config_with(), environ=env) == {
        "local_rank": 1,
        "offset": 2,
        "world_size": 4,
        "nproc": 2,
        "ip": "h",
        "port": 29500,
    }


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"nproc": 0}, "nproc must be a whole number >= 1"),  # refused by the Config (recbole_tasrec.settings)
        ({"nproc": 2, "world_size": 4, "offset": 3}, "offset"),
        ({"nproc": "two"}, "nproc must be"),
    ],
)
def test_bad_launch_settings_are_named(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        distributed.launch_settings(config_with(**settings), environ={})


def test_run_recbole_tasrec_hands_several_processes_to_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(distributed, "launch", lambda settings, run, **kw: seen.update(settings=settings, **kw))
    run_recbole_tasrec("TASRec", "sample", config_dict={"nproc": 2, "state": "WARNING"})
    assert seen["settings"]["world_size"] == 2 and seen["dataset"] == "sample"


def test_a_cpu_rank_joins_a_gloo_group(data_dir: Path, tmp_path: Path) -> None:
    settings = small_settings(data_dir, tmp_path, local_rank=0, world_size=1, nproc=1, port=free_port())
    try:
        config = Config("TASRec", "tiny", config_dict=settings)
        assert dist.get_backend() == "gloo" and config["device"].type == "cpu" and not config["single_spec"]
    finally:
        dist.destroy_process_group()
    assert distributed.backend_for(torch.device("cuda", 0)) == "nccl"


# --- two processes (Gloo) -------------------------------------------------------------------------------
def run_jobs(jobs: list[tuple[str, dict]], config_dict: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
    """``(model, settings)`` runs one after the other in the same processes (one spawn, one process group)."""
    return [run_recbole_tasrec(model, "tiny", config_dict={**config_dict, **extra}, **kwargs) for model, extra in jobs]


@pytest.fixture(scope="module")
def runs(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """TASRec on the tiny set, batch 128: 2 processes (64 each) and 1 process, for each seed."""
    settings = small_settings(data_dir, tmp_path_factory.mktemp("runs"), train_batch_size=128)
    launch = {"nproc": 2, "world_size": 2, "ip": "localhost", "port": free_port(), "offset": 0}
    reports: list[tuple[int, dict[str, float]]] = []
    two = distributed.launch(
        launch,
        run_jobs,
        # SRGNN: one evaluation batch, so that rank 0 scores nothing and must still join the gathering
        jobs=[("TASRec", {"seed": seed}) for seed in SEEDS] + [("SRGNN", {"eval_batch_size": 100_000})],
        config_dict=settings,
        epoch_callback=lambda epoch, valid: reports.append((epoch, dict(valid))),
    )
    one = run_jobs([("TASRec", {"seed": seed}) for seed in SEEDS], settings)
    return {"two": two[: len(SEEDS)], "one": one, "srgnn": two[len(SEEDS) :], "reports": reports}


@pytest.mark.slow
@pytest.mark.parametrize("group", ["two", "srgnn"])
def test_gathered_test_metrics_equal_one_process_evaluation_of_the_checkpoint(runs, group: str) -> None:
    result = runs[group][0]
    config, model, _, _, _, test_data = load_data_and_model(result["checkpoint"])
    assert config["single_spec"] and config["world_size"] == -1
    one_process = ScheduledTrainer(config, model).evaluate(test_data, load_best_model=False)
    assert {k: float(v) for k, v in one_process.items()} == result["test_result"]


@pytest.mark.slow
def test_rank_zero_reports_each_epoch_to_the_launching_process(runs) -> None:
    # what a Ray Tune trial running several processes relies on: its report is called in its own process
    assert runs["reports"] == [(0, r["best_valid_result"]) for r in runs["two"] + runs["srgnn"]]


@pytest.mark.slow
def test_two_processes_of_64_land_within_noise_of_one_of_128(runs) -> None:
    for key in ("train_loss", "recall@20"):
        values = {
            name: [r["train_loss"][0] if key == "train_loss" else r["test_result"][key] for r in group]
            for name, group in runs.items()
            if name in ("one", "two")
        }
        noise = max(max(v) - min(v) for v in values.values())  # the seeds' spread
        assert noise > 0, f"{key}: the seeds should differ"
        gap = abs(statistics.mean(values["two"]) - statistics.mean(values["one"]))
        assert gap <= noise, f"{key}: 2 processes {values['two']} vs 1 process {values['one']}"
