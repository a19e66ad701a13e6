"""Each RecBole 1.2.1 fix works, and the upstream code fails without it: the four module-level fixes of
recbole_tasrec.compat and the overrides in this package's Config, data set and trainer."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from recbole.data.dataset import Dataset
from recbole.utils import FeatureType

from recbole_tasrec import compat, run_recbole_tasrec
from recbole_tasrec.config import Config
from recbole_tasrec.data.dataset import DATA_SET_KEYS, DaySplitDataset, _SequenceFrame
from recbole_tasrec.quick_start import create_dataset, dataset_class
from tests.conftest import small_settings


def upstream(module: str, attribute: str) -> object:
    return compat.UPSTREAM[f"{module}:{attribute}"]


# --- module-level fixes ---------------------------------------------------------------------------------
def test_config_builds_on_numpy_2(data_dir: Path, tmp_path: Path) -> None:
    from recbole.config import Config as RecBoleConfig

    plain = {"data_path": str(data_dir), "train_neg_sample_args": None}
    assert RecBoleConfig("SRGNN", "tiny", config_dict=plain)["embedding_size"] == 64  # RecBole's own, too
    config = Config("SRGNN", "tiny", config_dict=small_settings(data_dir, tmp_path))
    assert config["embedding_size"] == 16
    assert np.float is np.float64 and np.int is np.int_  # the aliases RecBole's code still uses
    with pytest.raises(AttributeError, match="float_"):  # what upstream's compatibility_settings touches
        upstream("recbole.config.configurator", "Config.compatibility_settings")(config)


def test_a_config_read_back_in_a_fresh_process_sets_the_numpy_aliases(data_dir: Path, tmp_path: Path) -> None:
    """A process that only loads a checkpoint (``load_data_and_model``, then RecBole's evaluation) builds no
    ``Config``: reading one back must set the alias that RecBole's NDCG reads (``np.float``)."""
    path = tmp_path / "config.pkl"
    path.write_bytes(pickle.dumps(Config("SRGNN", "tiny", config_dict=small_settings(data_dir, tmp_path))))
    code = (
        "import pickle, sys, numpy as np, recbole_tasrec; assert 'float' not in np.__dict__; "
        f"config = pickle.loads(open({str(path)!r}, 'rb').read()); "
        "from recbole.evaluator.metrics import NDCG; "
        "print(NDCG(config).metric_info(np.ones((2, 20), bool), np.ones(2, int)).shape)"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.split() == ["(2,", "20)"], out.stderr[-2000:]


def test_recboles_trainer_loads_its_own_checkpoints_on_torch_2_6(tmp_path: Path) -> None:
    import recbole.trainer.trainer as trainer_module
    from recbole.utils import ModelType

    path = tmp_path / "recbole.pth"
    torch.save({"config": ModelType.SEQUENTIAL, "state_dict": {}}, path)  # RecBole pickles its Config's enums
    assert trainer_module.torch.load(path)["config"] is ModelType.SEQUENTIAL  # trainer.py:323, 583
    assert trainer_module.torch.zeros(1).shape == (1,)  # every other name is torch's
    with pytest.raises(Exception, match="weights_only"):
        upstream("recbole.trainer.trainer", "torch").load(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note while refusing the file
@pytest.mark.slow  # trains
def test_evaluate_loads_the_best_checkpoint_on_torch_2_6(data_dir: Path, tmp_path: Path) -> None:
    result = run_recbole_tasrec("SRGNN", "tiny", config_dict=small_settings(data_dir, tmp_path), saved=True)
    assert "recall@20" in result["test_result"]  # ScheduledTrainer.evaluate loaded the checkpoint
    with pytest.raises(Exception, match="weights_only"):
        torch.load(result["checkpoint"])  # torch's default, which trainer.py:583 used


def test_recboles_amp_lines_do_not_warn_but_others_still_do() -> None:
    import recbole.trainer.trainer as trainer_module

    line = "amp.GradScaler(enabled=False)"  # trainer.py:235, 1440
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        compat.filter_amp_warnings()  # as on import (pytest resets the filters per test); added last, it wins
        eval(line, vars(trainer_module))  # noqa: S307  (a fixed line, run as trainer.py's own)
        with pytest.raises(FutureWarning, match="deprecated"):
            eval(line, {**vars(trainer_module), "__name__": "elsewhere"})  # noqa: S307


def test_an_empty_sequence_value_reads_as_an_empty_sequence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import recbole.data.dataset.dataset as dataset_module

    write_item_file(tmp_path, "seq", ["1\ta b c", "2\t", "3\tc d", "4\ta"], "item_id:token\ttags:token_seq")
    config = item_dataset(tmp_path, tmp_path, "seq", ["item_id", "tags"])
    dataset = create_dataset(config)
    tags = dataset.item_feat["tags"]
    lengths = {dataset.id2token(dataset.iid_field, i): int((tags[i] > 0).sum()) for i in range(1, 5)}
    assert lengths == {"1": 3, "2": 0, "3": 2, "4": 1}  # item 2's missing tags: an empty sequence
    monkeypatch.setattr(dataset_module, "pd", upstream("recbole.data.dataset.dataset", "pd"))
    with pytest.raises(AttributeError, match="split"):  # dataset.py:501's fillna does nothing under pandas 3
        create_dataset(config)


def test_importing_recboles_models_leaves_anomaly_detection_off() -> None:
    import recbole.model.sequential_recommender  # noqa: F401  (imports sine.py, which switches it on)

    assert not torch.is_anomaly_enabled()


def test_fixes_apply_to_recbole_modules_imported_after_the_package() -> None:
    """In a fresh process, RecBole imported after ``recbole_tasrec``: the import hooks apply each fix."""
    code = (
        "import recbole_tasrec, sys; assert 'recbole' not in sys.modules; "
        "import recbole.trainer.trainer as t, recbole.config.configurator as c; "
        "print(type(t.torch).__name__, c.Config.compatibility_settings.__name__)"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["TrustedTorchLoad", "numpy_aliases"]


def test_install_is_idempotent() -> None:
    import recbole.trainer.trainer as trainer_module

    before = trainer_module.torch
    compat.install()
    assert trainer_module.torch is before


def test_the_package_refuses_the_models_that_needed_scipys_dok_update(data_dir: Path, tmp_path: Path) -> None:
    """scipy 1.13 removed ``dok_matrix._update``, which LightGCN, NGCF, NCL, GCMC and SpectralCF call: the
    package runs sequential models only, so it leaves scipy alone."""
    import scipy.sparse as sp

    assert not hasattr(sp.dok_matrix, "_update")
    with pytest.raises(ValueError, match="not a sequential model"):
        dataset_class(Config("LightGCN", "tiny", config_dict=small_settings(data_dir, tmp_path)))


# --- overrides in DaySplitDataset -------------------------------------------------------------------------
def bare_dataset(**attributes: object) -> DaySplitDataset:
    dataset = object.__new__(DaySplitDataset)
    dataset.__dict__.update(attributes)
    return dataset


def test_dataframe_columns_become_tensors_without_a_read_only_warning() -> None:
    frame = pd.DataFrame({"item_id": np.array([3, 1, 2]), "timestamp": np.array([1.5, 2.5, 3.5])})
    assert not frame["item_id"].values.flags.writeable  # pandas 3 copy-on-write
    fields = {"field2type": {"item_id": FeatureType.TOKEN, "timestamp": FeatureType.FLOAT}}
    dataset = bare_dataset(**fields, config={"numerical_features": []})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        interaction = dataset._dataframe_to_interaction(frame)
    assert interaction["item_id"].tolist() == [3, 1, 2] and interaction["timestamp"].tolist() == [1.5, 2.5, 3.5]
    interaction["item_id"][0] = 9  # the tensor owns its memory: the frame stays as it was
    assert frame["item_id"].tolist() == [3, 1, 2]
    with pytest.warns(UserWarning, match="not writable"):
        Dataset._dataframe_to_interaction(SimpleNamespace(**fields, config={"numerical_features": []}), frame)


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
        Dataset._fill_nan(stub)
    assert frame["price"].isna().any()


def test_sequence_columns_keep_each_rows_length_under_pandas_3() -> None:
    rows = [np.array([1, 2]), np.array([3]), np.array([], dtype=np.int64)]
    assert pd.Series(rows).agg(len) == 3  # pandas 3: the Series' length, which dataset.py:1217 split by
    frame = _SequenceFrame({"tags": rows, "price": [1.0, 2.0, 3.0]})
    assert frame["tags"].agg(len).tolist() == [2, 1, 0]
    assert frame[frame["price"] > 1.0]["tags"].agg(len).tolist() == [1, 0]  # filtered frames keep the fix
    assert frame["tags"].agg(np.concatenate).tolist() == [1, 2, 3]


# --- overrides in Config and the run folder ----------------------------------------------------------------
@pytest.mark.slow  # trains
def test_logs_and_tensorboard_land_in_run_dir_one_file_per_run(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first, second = tmp_path / "first", tmp_path / "second"
    for run_dir in (first, second):
        settings = small_settings(data_dir, run_dir, state="INFO")
        run_recbole_tasrec("GRU4Rec", "tiny", config_dict=settings, saved=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", "second"]
    for run_dir in (first, second):
        logs = list((run_dir / "log").rglob("*.log"))
        assert len(logs) == 1 and "GRU4Rec" in logs[0].read_text()
        events = (run_dir / "log_tensorboard").rglob("events.out.tfevents.*")
        assert {e.relative_to(run_dir / "log_tensorboard").parts[0] for e in events} == {logs[0].stem}
    assert len([h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]) == 1


def test_building_a_config_creates_nothing_until_a_run_starts(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recbole_tasrec.run_folder import init_logger

    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "later"
    handlers = list(logging.getLogger().handlers)
    config = Config("TASRec", "tiny", config_dict={"data_path": str(data_dir), "run_dir": str(run_dir)})
    assert config["checkpoint_dir"] == str(run_dir / "saved")  # the default follows run_dir
    assert list(tmp_path.iterdir()) == [] and logging.getLogger().handlers == handlers
    init_logger(config)  # a run starts: its folder and log file appear
    assert len(list((run_dir / "log" / "TASRec").glob("*.log"))) == 1


# --- the saved data set ----------------------------------------------------------------------------------
def test_the_saved_data_set_notices_this_packages_keys(data_dir: Path, tmp_path: Path) -> None:
    from recbole.utils.argument_list import dataset_arguments

    assert not set(DaySplitDataset.CONFIG_KEYS) - {"MAX_ITEM_LIST_LENGTH"} & set(dataset_arguments)  # untouched
    assert set(DaySplitDataset.CONFIG_KEYS) <= set(DATA_SET_KEYS)
    settings = small_settings(data_dir, tmp_path, save_dataset=True)
    first = create_dataset(Config("TASRec", "tiny", config_dict=settings))
    assert (tmp_path / "saved" / "tiny-DaySplitDataset.pth").is_file()
    cached = create_dataset(Config("TASRec", "tiny", config_dict=settings))
    assert cached.n_days == first.n_days == 14
    changed = create_dataset(Config("TASRec", "tiny", config_dict={**settings, "day_span": 2}))
    assert changed.n_days == 7


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.mkdir, (str(self.marker),))


def test_a_planted_saved_data_set_is_not_read_unless_asked_for(data_dir: Path, tmp_path: Path) -> None:
    """RecBole's ``<checkpoint_dir>/<dataset>-<Class>.pth`` is a pickle: read only with ``save_dataset`` or
    ``dataset_save_path`` set, never because a file of that name lies in a shared run folder."""
    settings = small_settings(data_dir, tmp_path)
    assert not Config("TASRec", "tiny", config_dict=settings)["save_dataset"]
    planted, marker = tmp_path / "saved" / "tiny-DaySplitDataset.pth", tmp_path / "code-ran"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(pickle.dumps(_RunsCodeWhenUnpickled(marker)))
    assert create_dataset(Config("TASRec", "tiny", config_dict=settings)).n_days == 14
    assert not marker.exists()
    with pytest.raises(AttributeError):  # asked for: read (and the planted object is no data set)
        create_dataset(Config("TASRec", "tiny", config_dict={**settings, "dataset_save_path": str(planted)}))
    assert marker.exists()
