"""Fixes for RecBole 1.2.1 on numpy 2, pandas 3, torch >= 2.6, scipy >= 1.13 and current Ray, and nothing else.

RecBole 1.2.1 is the last release and breaks on a modern stack in a handful of known places
(listed in DESIGN.md section 5). :func:`apply` patches each of them once, idempotently; it runs
when ``recbole_tasrec`` is imported. The run folder (where logs, tensorboard runs and checkpoints go) is a
feature, not a fix: :mod:`recbole_tasrec.run_folder`.
Every patch names the upstream file and line it answers and has a test in ``tests/test_compat.py``
that fails without it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from recbole_tasrec.distributed import backend_for

_APPLIED = False
#: The upstream functions that :func:`apply` replaced outright, by qualified name (tests show they fail).
UPSTREAM: dict[str, Any] = {}


# --- numpy 2 ------------------------------------------------------------------------------------------
def _numpy_aliases(_config: Any = None) -> None:
    """Replacement for ``Config.compatibility_settings`` (recbole/config/configurator.py:625-635).

    Upstream assigns ``np.float = np.float_`` and friends; numpy 2 removed ``np.float_``, ``np.complex_``
    and ``np.unicode_``, so every ``Config()`` raised. RecBole's code still uses the old aliases
    ``np.float`` (evaluator/metrics.py:90, data/dataset/dataset.py:652, data/interaction.py:31),
    ``np.bool`` (evaluator/metrics.py:287) and ``np.long`` (model/abstract_recommender.py:309), so those
    are defined, with the meaning they had in numpy 1.
    """
    for name, value in {"float": np.float64, "int": np.int_, "bool": np.bool_, "long": np.int_}.items():
        if name not in np.__dict__:
            setattr(np, name, value)


# --- torch >= 2.6 ---------------------------------------------------------------------------------------
class _TorchTrustedLoad:
    """``torch`` as RecBole's modules see it, with ``torch.load(..., weights_only=False)`` by default.

    torch 2.6 made ``weights_only=True`` the default; RecBole's checkpoints pickle the ``Config`` object, so
    ``trainer/trainer.py:583`` (``evaluate(load_best_model=True)``), ``trainer/trainer.py:323`` (resume) and
    ``quick_start/quick_start.py:250`` (``load_data_and_model``) fail. Those files only load checkpoints
    that RecBole wrote itself, which are trusted.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    @staticmethod
    def load(f: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("weights_only", False)
        return torch.load(f, *args, **kwargs)


class _CudaAmp:
    """``torch.cuda.amp`` as ``trainer/trainer.py:30`` imports it, on the non-deprecated ``torch.amp`` API.

    ``torch.cuda.amp.GradScaler`` (trainer.py:235, 1440) and ``autocast`` (trainer.py:1453) warn on every
    run since torch 2.4; these are the same objects built through ``torch.amp``.
    """

    @staticmethod
    def GradScaler(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 (mirrors torch's name)
        return torch.amp.GradScaler("cuda", *args, **kwargs)

    @staticmethod
    def autocast(*args: Any, **kwargs: Any) -> Any:
        return torch.autocast("cuda", *args, **kwargs)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a patch right after a module is first imported, so that a heavy module is patched only if used.

    ``recbole.quick_start`` imports ray at import time (quick_start.py:20); importing it eagerly here
    would cost every ``import recbole_tasrec`` a Ray import.
    """

    def __init__(self, module: str, patch: Callable[[Any], None]) -> None:
        self.module, self.patch = module, patch

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.module:
            return None
        sys.meta_path.remove(self)  # one shot: the module is imported once
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader, patch = spec.loader, self.patch

        class _PatchingLoader(importlib.abc.Loader):
            def create_module(self, spec: Any) -> Any:
                return loader.create_module(spec)

            def exec_module(self, module: Any) -> None:
                loader.exec_module(module)
                patch(module)

        spec.loader = _PatchingLoader()
        return spec


def _patch_when_imported(module: str, patch: Callable[[Any], None]) -> None:
    if module in sys.modules:
        patch(sys.modules[module])
    else:
        sys.meta_path.insert(0, _AfterImport(module, patch))


def _trusted_torch_load(module: Any) -> None:
    module.torch = _TorchTrustedLoad()


def _no_anomaly_detection(_module: Any) -> None:
    """``recbole/model/sequential_recommender/sine.py:25`` calls ``torch.autograd.set_detect_anomaly(True)`` at
    import, for the whole process; importing any RecBole sequential model (the package imports them all) then
    makes every backward pass record stack traces, several times slower. Switched back off right after."""
    torch.autograd.set_detect_anomaly(False)


# --- pandas 3 ---------------------------------------------------------------------------------------
def _fill_nan(self: Any) -> None:
    """Replacement for ``Dataset._fill_nan`` (recbole/data/dataset/dataset.py:648/650).

    Upstream calls ``feat[field].fillna(..., inplace=True)``; under pandas 3 copy-on-write ``feat[field]``
    is a copy, so the NaN stays and later becomes a garbage id. Same filling rules, assigned back.
    """
    from recbole.utils import FeatureType

    for feat_name in self.feat_name_list:
        feat = getattr(self, feat_name)
        for field in feat:
            ftype = self.field2type[field]
            if ftype == FeatureType.TOKEN:
                feat[field] = feat[field].fillna(value=0)
            elif ftype == FeatureType.FLOAT:
                feat[field] = feat[field].fillna(value=feat[field].mean())
            else:
                dtype = np.int64 if ftype == FeatureType.TOKEN_SEQ else np.float64
                feat[field] = feat[field].apply(lambda x, d=dtype: np.array([], dtype=d) if isinstance(x, float) else x)


@contextlib.contextmanager
def _elementwise_len() -> Iterator[None]:
    """Make ``Series.agg(len)`` mean one length per row again, while a RecBole method runs.

    pandas 3 applies a function given to ``Series.agg`` to the whole Series first, so ``agg(len)`` returns the
    Series' length instead of each sequence's. RecBole relies on the old meaning in ``dataset.py:712, 792, 809,
    1217`` and ``sequential_dataset.py:152`` (``_benchmark_presets``). ``agg(np.concatenate)``, used beside it,
    is unaffected.
    """
    original = pd.Series.agg

    def agg(self: pd.Series, func: Any = None, *args: Any, **kwargs: Any) -> Any:
        if func is len:
            return self.map(len)
        return original(self, func, *args, **kwargs)

    pd.Series.agg = agg
    try:
        yield
    finally:
        pd.Series.agg = original


def _with_elementwise_len(method: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _elementwise_len():
            return method(*args, **kwargs)

    wrapper.__wrapped__ = method  # type: ignore[attr-defined]
    wrapper.__doc__ = method.__doc__
    return wrapper


class _WritableColumns(dict):
    """A DataFrame's columns as ``name -> object with .values``, each a private, writable numpy copy."""

    def __init__(self, frame: pd.DataFrame) -> None:
        super().__init__((name, _Column(np.array(frame[name].to_numpy(), copy=True))) for name in frame.columns)


class _Column:
    __slots__ = ("values",)

    def __init__(self, values: np.ndarray) -> None:
        self.values = values


def _dataframe_to_interaction(original: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Wrap ``Dataset._dataframe_to_interaction`` (recbole/data/dataset/dataset.py:2202).

    Under pandas 3 copy-on-write, ``Series.values`` is read-only; ``torch.LongTensor(values)`` then shares
    memory that must not be written and warns. The tensors get private copies instead.
    """

    def to_interaction(self: Any, data: Any) -> Any:
        return original(self, _WritableColumns(data) if isinstance(data, pd.DataFrame) else data)

    to_interaction.__wrapped__ = original  # type: ignore[attr-defined]
    return to_interaction


class _PandasReadingEmptySequences:
    """``pandas`` as ``Dataset._load_feat`` sees it: a missing ``token_seq``/``float_seq`` value reads as "".

    Upstream fills those with ``df[field].fillna(value="", inplace=True)`` (recbole/data/dataset/dataset.py:501),
    which does nothing under pandas 3 copy-on-write, so the next line's ``.split`` crashed on a NaN.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(pd, name)

    @staticmethod
    def read_csv(*args: Any, **kwargs: Any) -> pd.DataFrame:
        frame = pd.read_csv(*args, **kwargs)
        for column in frame.columns:
            if str(column).endswith("seq"):
                frame[column] = frame[column].fillna("")
        return frame


def _silence_pandas_inplace_deprecations() -> None:
    """RecBole calls ``drop(..., inplace=True)`` and ``reset_index(..., inplace=True)`` on DataFrames
    (recbole/data/dataset/dataset.py:1065, 1104 and others), which pandas 3.1 deprecates (PDEP-8) with a
    warning on every run. They still work; the warning is RecBole's alone, so it is filtered for RecBole's
    modules only."""
    import warnings

    category = getattr(pd.errors, "Pandas4Warning", None)
    if category is not None:
        warnings.filterwarnings("ignore", message=".*inplace keyword", category=category, module=r"recbole\.")
    # dataset.py:501's no-op fillna; the values it meant to fill are filled on reading (see above)
    warnings.filterwarnings("ignore", category=pd.errors.ChainedAssignmentError, module=r"recbole\.data\.dataset")


# --- scipy >= 1.13 -----------------------------------------------------------------------------------
def _dok_update(self: sp.dok_matrix, data: dict) -> None:
    """``dok_matrix._update`` was removed in scipy 1.13; LightGCN, NGCF, NCL, GCMC and SpectralCF call it
    (e.g. recbole/model/general_recommender/lightgcn.py:111) to bulk-insert a dict of entries."""
    rows, cols = zip(*data.keys(), strict=True) if data else ((), ())
    values = np.fromiter(data.values(), dtype=self.dtype, count=len(data))
    self[np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp)] = values


# --- distributed training: RecBole hard-codes NCCL and GPU-only DDP ------------------------------------------------
#: Buffers are computed alike on every rank: no broadcast per step (newer torch renames the flag).
NO_BUFFER_SYNC_PER_STEP = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else {"broadcast_buffers": False}
)


def _init_device_any_backend(self: Any) -> None:
    """``Config._init_device`` (configurator.py:476): for a rank of a distributed run, join the process group
    with the device's backend (upstream: NCCL always) and pick the device (upstream: always CUDA)."""
    cfg = self.final_config_dict
    if "local_rank" not in cfg:
        return UPSTREAM["Config._init_device"](self)
    gpu_id = ",".join(map(str, cfg["gpu_id"])) if isinstance(cfg["gpu_id"], tuple) else str(cfg["gpu_id"])
    cfg["gpu_id"] = gpu_id
    if "TORCHELASTIC_RUN_ID" not in os.environ:  # torchrun decides which GPUs its processes see
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_id
    local_rank, nproc = int(cfg["local_rank"]), int(cfg.get("nproc") or 1)
    device = torch.device("cuda", local_rank) if gpu_id and torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        if torch.cuda.device_count() < nproc:
            raise ValueError(
                f"{nproc} processes need {nproc} GPUs but gpu_id={gpu_id!r} shows {torch.cuda.device_count()}: "
                "list them with --gpu_id=0,1,... or start fewer processes"
            )
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        under_torchrun = "TORCHELASTIC_RUN_ID" in os.environ  # its agent already serves the rendezvous store
        dist.init_process_group(
            backend=backend_for(device),
            init_method="env://" if under_torchrun else f"tcp://{cfg.get('ip') or 'localhost'}:{cfg.get('port')}",
            rank=local_rank + int(cfg.get("offset") or 0),
            world_size=int(cfg["world_size"]),
        )
    cfg.update(device=device, single_spec=False)
    if local_rank != 0:  # as upstream: only each machine's first process logs
        cfg.update(state="error", show_progress=False, verbose=False)


def _trainer_init_cpu_ddp(self: Any, config: Any, model: torch.nn.Module) -> None:
    """``AbstractTrainer.__init__`` (trainer.py:57): ``device_ids`` only for a GPU module (upstream passes them
    for CPU modules too, which DDP refuses), and no buffer broadcast per step: each rank computes its buffers."""
    self.config = config
    self.model = model
    if not config["single_spec"]:
        self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        on_gpu = config["device"].type == "cuda"
        self.distributed_model = DistributedDataParallel(
            self.model, device_ids=[config["local_rank"]] if on_gpu else None, **NO_BUFFER_SYNC_PER_STEP
        )


def _ensure_dir_concurrent(dir_path: str) -> None:
    """``ensure_dir`` (utils/utils.py:44): its check-then-create fails when several processes start together."""
    os.makedirs(dir_path, exist_ok=True)


def apply() -> None:
    """Apply every patch once. Safe to call again."""
    global _APPLIED
    if _APPLIED:
        return
    import recbole.config.configurator as configurator
    import recbole.data.dataset.dataset as dataset_module
    import recbole.data.dataset.sequential_dataset as sequential_module
    import recbole.trainer.trainer as trainer_module
    from recbole.utils.argument_list import dataset_arguments

    UPSTREAM["Config.compatibility_settings"] = configurator.Config.compatibility_settings
    UPSTREAM["Dataset._fill_nan"] = dataset_module.Dataset._fill_nan
    _numpy_aliases()
    configurator.Config.compatibility_settings = _numpy_aliases

    UPSTREAM["trainer.amp"] = trainer_module.amp
    trainer_module.torch = _TorchTrustedLoad()
    trainer_module.amp = _CudaAmp()
    _patch_when_imported("recbole.quick_start.quick_start", _trusted_torch_load)
    _patch_when_imported("recbole.model.sequential_recommender.sine", _no_anomaly_detection)

    dataset_module.Dataset._fill_nan = _fill_nan
    dataset_module.pd = _PandasReadingEmptySequences()
    UPSTREAM["Dataset._dataframe_to_interaction"] = dataset_module.Dataset._dataframe_to_interaction
    dataset_module.Dataset._dataframe_to_interaction = _dataframe_to_interaction(
        dataset_module.Dataset._dataframe_to_interaction
    )
    for cls, name in [
        (dataset_module.Dataset, "_normalize"),
        (dataset_module.Dataset, "_discretization"),
        (dataset_module.Dataset, "_remap"),
        (sequential_module.SequentialDataset, "_benchmark_presets"),
    ]:
        setattr(cls, name, _with_elementwise_len(getattr(cls, name)))

    _silence_pandas_inplace_deprecations()

    if not hasattr(sp.dok_matrix, "_update"):
        sp.dok_matrix._update = _dok_update

    # the saved-dataset cache (recbole/data/utils.py:55-70) compares only ``dataset_arguments``: without this
    # package's data set keys a changed day_span or filter would silently reuse a stale cache
    from recbole_tasrec.data.dataset import TASRecDataset

    dataset_arguments.extend(key for key in TASRecDataset.CONFIG_KEYS if key not in dataset_arguments)

    # distributed runs on CPUs (issue 12): NCCL hard-code, GPU-only DDP, racing ensure_dir
    import recbole.utils.logger as logger_module

    UPSTREAM["Config._init_device"] = configurator.Config._init_device
    UPSTREAM["AbstractTrainer.__init__"] = trainer_module.AbstractTrainer.__init__
    configurator.Config._init_device = _init_device_any_backend
    trainer_module.AbstractTrainer.__init__ = _trainer_init_cpu_ddp
    trainer_module.ensure_dir = logger_module.ensure_dir = _ensure_dir_concurrent
    _APPLIED = True
