"""Each RecBole 1.2.1 fix of recbole_tasrec.compat works, and the upstream code fails without it."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from recbole.data.dataset import Dataset
from recbole.utils import FeatureType

from recbole_tasrec import compat, run_recbole_tasrec
from recbole_tasrec.config import Config
from recbole_tasrec.data.dataset import TASRecDataset
from recbole_tasrec.quick_start import create_dataset
from tests.conftest import small_settings


def test_config_builds_on_numpy_2(data_dir: Path, tmp_path: Path) -> None:
    config = Config("SRGNN", "tiny", config_dict=small_settings(data_dir, tmp_path))
    assert config["embedding_size"] == 16
    assert np.float is np.float64 and np.int is np.int_  # the aliases RecBole's code still uses
    with pytest.raises(AttributeError, match="float_"):  # what upstream's compatibility_settings touches
        compat.UPSTREAM["Config.compatibility_settings"](config)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note while refusing the file
@pytest.mark.slow  # trains
def test_evaluate_loads_the_best_checkpoint_on_torch_2_6(data_dir: Path, tmp_path: Path) -> None:
    result = run_recbole_tasrec("SRGNN", "tiny", config_dict=small_settings(data_dir, tmp_path), saved=True)
    assert "recall@20" in result["test_result"]  # trainer.py:583 loaded the checkpoint
    with pytest.raises(Exception, match="weights_only"):
        torch.load(result["checkpoint"])  # torch's default, which trainer.py:583 used


def test_quick_start_module_loads_checkpoints_too() -> None:
    import recbole.quick_start.quick_start as upstream

    assert isinstance(upstream.torch, compat._TorchTrustedLoad)


def test_trainer_amp_is_built_without_torchs_deprecation_warning() -> None:
    import warnings

    import recbole.trainer.trainer as trainer_module

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer_module.amp.GradScaler(enabled=False)  # trainer.py:235, 1440
        with trainer_module.amp.autocast(enabled=False):  # trainer.py:1453
            pass
    upstream = compat.UPSTREAM["trainer.amp"]  # torch.cuda.amp, as trainer.py:30 imports it
    with pytest.warns(FutureWarning, match="deprecated"):
        upstream.GradScaler(enabled=False)
    with pytest.warns(FutureWarning, match="deprecated"), upstream.autocast(enabled=False):
        pass


def test_dataframe_columns_become_tensors_without_a_read_only_warning() -> None:
    import warnings

    frame = pd.DataFrame({"item_id": np.array([3, 1, 2]), "timestamp": np.array([1.5, 2.5, 3.5])})
    assert not frame["item_id"].values.flags.writeable  # pandas 3 copy-on-write
    stub = SimpleNamespace(
        field2type={"item_id": FeatureType.TOKEN, "timestamp": FeatureType.FLOAT},
        config={"numerical_features": []},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        interaction = Dataset._dataframe_to_interaction(stub, frame)
    assert interaction["item_id"].tolist() == [3, 1, 2] and interaction["timestamp"].tolist() == [1.5, 2.5, 3.5]
    interaction["item_id"][0] = 9  # the tensor owns its memory: the frame stays as it was
    assert frame["item_id"].tolist() == [3, 1, 2]
    with pytest.warns(UserWarning, match="not writable"):
        compat.UPSTREAM["Dataset._dataframe_to_interaction"](stub, frame)


def write_item_file(root: Path, name: str, rows: list[str], header: str) -> None:
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / f"{name}.item").write_text(header + "\n" + "\n".join(rows) + "\n")
    inter = ["session_id:token\titem_id:token\ttimestamp:float"]
    inter += [f"{s}\t{1 + (s + k) % 4}\t{86400 * s + k}" for s in range(1, 40) for k in range(3)]
    (root / name / f"{name}.inter").write_text("\n".join(inter) + "\n")


def item_dataset(root: Path, tmp_path: Path, name: str, load: list[str]) -> Config:
    settings = small_settings(root, tmp_path, min_item_clicks=1)
    settings["load_col"] = {"inter": ["session_id", "item_id", "timestamp"], "item": load}
    return Config("SRGNN", name, config_dict=settings)


def test_nan_in_an_item_feature_is_filled_under_pandas_3(tmp_path: Path) -> None:
    write_item_file(
        tmp_path,
        "nan",
        ["1\tred\t1.0", "2\t\t", "3\tblue\t3.0", "4\tred\t5.0"],
        "item_id:token\tcolour:token\tprice:float",
    )
    config = item_dataset(tmp_path, tmp_path, "nan", ["item_id", "colour", "price"])
    dataset = create_dataset(config)
    feat = dataset.item_feat.set_index(dataset.iid_field)
    assert not feat.isna().any().any()
    item_two = dataset.token2id(dataset.iid_field, "2")
    assert feat.loc[item_two, "colour"] == 0  # RecBole's [PAD] id for a missing token
    assert feat.loc[item_two, "price"] == pytest.approx(3.0)  # the column mean
    # upstream's fillna(inplace=True) on a column leaves the NaN under copy-on-write
    frame = pd.DataFrame({"price": [1.0, np.nan]})
    stub = SimpleNamespace(
        feat_name_list=["feat"], field2type={"price": FeatureType.FLOAT}, feat=frame, logger=logging.getLogger()
    )
    with pytest.warns(Warning, match="inplace|chained"):  # pandas says so, too
        compat.UPSTREAM["Dataset._fill_nan"](stub)
    assert frame["price"].isna().any()


def test_token_seq_feature_keeps_each_rows_length_under_pandas_3(tmp_path: Path) -> None:
    write_item_file(tmp_path, "seq", ["1\ta b c", "2\t", "3\tc d", "4\ta"], "item_id:token\ttags:token_seq")
    config = item_dataset(tmp_path, tmp_path, "seq", ["item_id", "tags"])
    dataset = create_dataset(config)
    tags = dataset.item_feat["tags"]
    lengths = {dataset.id2token(dataset.iid_field, i): int((tags[i] > 0).sum()) for i in range(1, 5)}
    assert lengths == {"1": 3, "2": 0, "3": 2, "4": 1}  # item 2's missing tags: an empty sequence
    series = pd.Series([np.array([1, 2]), np.array([3])])
    assert series.agg(len) == 2  # pandas 3 outside the patch: the Series' length, not each row's


def test_dok_update_is_back_for_recboles_graph_models() -> None:
    matrix = sp.dok_matrix((3, 3), dtype=np.float32)
    matrix._update({(0, 1): 1.0, (2, 0): 2.0})
    assert matrix.toarray().tolist() == [[0, 1, 0], [0, 0, 0], [2, 0, 0]]
    assert compat._dok_update.__name__ in repr(sp.dok_matrix._update)


@pytest.mark.slow  # trains
def test_logs_and_tensorboard_land_in_run_dir_one_file_per_run(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first, second = tmp_path / "first", tmp_path / "second"
    for run_dir in (first, second):
        settings = small_settings(data_dir, run_dir, state="INFO")
        run_recbole_tasrec("GRU4Rec", "tiny", config_dict=settings, saved=False)
    assert not (tmp_path / "log").exists() and not (tmp_path / "log_tensorboard").exists()
    for run_dir in (first, second):
        logs = list((run_dir / "log").rglob("*.log"))
        assert len(logs) == 1 and "GRU4Rec" in logs[0].read_text()
        assert any((run_dir / "log_tensorboard").rglob("events.out.tfevents.*"))
    assert len([h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]) == 1


def test_building_a_config_creates_nothing_until_a_run_starts(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recbole.utils import init_logger

    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "later"
    handlers = list(logging.getLogger().handlers)
    config = Config("TASRec", "tiny", config_dict={"data_path": str(data_dir), "run_dir": str(run_dir)})
    assert config["checkpoint_dir"] == str(run_dir / "saved")  # the default follows run_dir
    assert list(tmp_path.iterdir()) == [] and logging.getLogger().handlers == handlers
    init_logger(config)  # a run starts: its folder and log file appear
    assert len(list((run_dir / "log" / "TASRec").glob("*.log"))) == 1


def test_dataset_cache_notices_this_packages_keys(data_dir: Path, tmp_path: Path) -> None:
    from recbole.utils.argument_list import dataset_arguments

    assert set(TASRecDataset.CONFIG_KEYS) <= set(dataset_arguments)
    settings = small_settings(data_dir, tmp_path, save_dataset=True)
    first = create_dataset(Config("TASRec", "tiny", config_dict=settings))
    assert (tmp_path / "saved" / "tiny-TASRecDataset.pth").is_file()
    cached = create_dataset(Config("TASRec", "tiny", config_dict=settings))
    assert cached.n_days == first.n_days == 14
    changed = create_dataset(Config("TASRec", "tiny", config_dict={**settings, "day_span": 2}))
    assert changed.n_days == 7


def test_apply_is_idempotent() -> None:
    before = Dataset._fill_nan
    compat.apply()
    assert Dataset._fill_nan is before


def test_importing_recboles_models_leaves_anomaly_detection_off() -> None:
    import recbole.model.sequential_recommender  # noqa: F401  (imports sine.py, which switches it on)

    assert not torch.is_anomaly_enabled()
