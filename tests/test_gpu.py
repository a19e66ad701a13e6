"""``--device cuda``: training, evaluation and serving on a GPU, the temporal graph on the device.

Every test needs CUDA and is skipped without it (CI has none); ``benchmarks/gpu_check.py`` runs this file
and the training benchmark on a machine that has one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recbole_tasrec import run_recbole_tasrec
from recbole_tasrec.config import Config
from recbole_tasrec.data import TASRecDataset
from recbole_tasrec.model import TASRec
from recbole_tasrec.serve import SessionRecommender
from recbole_tasrec.trainer import TASRecTrainer
from tests.conftest import small_settings

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")


@pytest.fixture(scope="module")
def parts(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    config = Config("TASRec", "tiny", config_dict=small_settings(data_dir, tmp_path_factory.mktemp("gpu")))
    train, _, test = TASRecDataset(config).build()
    return config, train, test


def test_config_puts_the_model_on_the_gpu(parts) -> None:
    config, _, _ = parts
    assert config["device"].type == "cuda", "RecBole's use_gpu should pick the GPU when one is present"


def test_scores_on_the_gpu_equal_the_cpu_ones_and_the_graph_lives_there(parts) -> None:
    config, train, test = parts
    torch.manual_seed(0)
    cpu = TASRec(config, train).eval()
    gpu = TASRec(config, train).eval()
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cuda")
    batch = test.inter_feat[torch.arange(64)]
    with torch.no_grad():
        expected = cpu.full_sort_predict(batch)
        got = gpu.full_sort_predict(batch.to("cuda"))
    assert got.device.type == "cuda"
    assert torch.allclose(got.cpu(), expected, atol=1e-4)
    day = int(batch[train.day_field][0])
    p = gpu.graphs.propagation(day, device=gpu.item_embedding.weight.device)
    assert p.device.type == "cuda"
    assert gpu.graphs.propagation(day, device=gpu.item_embedding.weight.device) is p  # cached: no new copy


def test_a_training_step_keeps_everything_on_the_gpu(parts) -> None:
    config, train, _ = parts
    model = TASRec(config, train).to("cuda").train()
    trainer = TASRecTrainer(config, model)
    assert trainer.optimizer.defaults["fused"] is True
    batch = train.inter_feat[torch.arange(64)].to("cuda")
    before = model.item_embedding.weight.detach().clone()
    trainer.optimizer.zero_grad()
    loss = model.calculate_loss(batch)
    loss.backward()
    trainer.optimizer.step()
    assert loss.device.type == "cuda" and torch.isfinite(loss)
    assert all(p.device.type == "cuda" for p in model.parameters())
    assert not torch.equal(before, model.item_embedding.weight)


def test_end_to_end_run_and_serving_on_the_gpu(data_dir: Path, tmp_path: Path) -> None:
    result = run_recbole_tasrec("TASRec", "tiny", config_dict=small_settings(data_dir, tmp_path, use_gpu=True))
    assert result["test_result"]
    recommender = SessionRecommender.from_checkpoint(result["checkpoint"], device="cuda")
    assert recommender.model.item_embedding.weight.device.type == "cuda"
    tokens = recommender.item_tokens
    scores = recommender.scores([[tokens[1], tokens[2]]])
    assert scores.device.type == "cuda" and torch.isfinite(scores[:, 1:]).all()
