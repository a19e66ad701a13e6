"""One entry point for every run: the CLI, the tests, Ray Tune and the benchmarks all call
:func:`run_recbole_tasrec`.

Every sequential model (TASRec and RecBole's own) gets the same dataset class for a data set
(:class:`~recbole_tasrec.data.dataset.DaySplitDataset`) and the same trainer
(:class:`~recbole_tasrec.trainer.ScheduledTrainer`), so all models see one day-based split and their numbers
compare.
"""

from __future__ import annotations

import importlib
import os
import pickle
from dataclasses import dataclass
from logging import getLogger
from pathlib import Path
from typing import Any

import torch
from recbole.data.utils import create_samplers, get_dataloader
from recbole.utils import ModelType, init_seed, set_color

from recbole_tasrec import continual, distributed
from recbole_tasrec.checkpoint import check_identity, checkpoint_identity, load_trusted, run_identity
from recbole_tasrec.config import Config, get_model
from recbole_tasrec.data.dataset import DATA_SET_KEYS, check_topk
from recbole_tasrec.distributed.sharding import eval_loader_class
from recbole_tasrec.distributed.trainer import distributed_trainer
from recbole_tasrec.resume import find_resume_file
from recbole_tasrec.run_folder import init_logger
from recbole_tasrec.trainer import EpochCallback, ScheduledTrainer


@dataclass
class PreparedData:
    """A processed data set and its day-based split, built once and shared by runs (e.g. sweep trials)."""

    dataset: Any
    train: Any
    valid: Any
    test: Any


def dataset_class(config: Config) -> type:
    """``<Model>Dataset`` of this package if a model needs its own, else the day-indexed dataset for every
    sequential model (one split for all), else RecBole's choice."""
    module = importlib.import_module("recbole_tasrec.data")
    own = getattr(module, f"{config['model']}Dataset", None)
    if own is not None:
        return own
    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL:
        return module.DaySplitDataset
    raise ValueError(
        f"{config['model']} is not a sequential model: recbole-tasrec runs session-based (sequential) models; "
        "use RecBole's own run_recbole for other model types"
    )


def saved_dataset_file(config: Config, cls: type) -> str | None:
    """The processed data set's pickle this run may read: ``dataset_save_path``, or with ``save_dataset`` on,
    RecBole's ``<checkpoint_dir>/<dataset>-<Class>.pth``; ``None`` when the user asked for neither. A pickle
    runs code when read: a file someone left in a shared run folder is never read unasked."""
    if config["dataset_save_path"]:
        return str(config["dataset_save_path"])
    if config["save_dataset"]:
        return os.path.join(config["checkpoint_dir"], f"{config['dataset']}-{cls.__name__}.pth")
    return None


def create_dataset(config: Config) -> Any:
    """Build the processed data set, or load the saved copy the user enabled (:func:`saved_dataset_file`)
    when every setting that shapes it (:data:`~recbole_tasrec.data.dataset.DATA_SET_KEYS`) still matches."""
    cls = dataset_class(config)
    saved = saved_dataset_file(config, cls)
    if saved is not None and os.path.exists(saved):
        with open(saved, "rb") as f:
            dataset = pickle.load(f)
        if all(config[key] == dataset.config[key] for key in [*DATA_SET_KEYS, "seed", "repeatable"]):
            getLogger().info(set_color("Load filtered dataset from", "pink") + f": [{saved}]")
            return dataset
    dataset = cls(config)
    if config["save_dataset"]:
        dataset.save()
    return dataset


def prepare_data(config: Config) -> PreparedData:
    """Load, filter and split a data set: the expensive part a sweep does once."""
    dataset = create_dataset(config)
    check_topk(dataset)
    getLogger().info(dataset)
    train, valid, test = dataset.build()
    return PreparedData(dataset, train, valid, test)


def make_dataloaders(config: Config, prepared: PreparedData) -> tuple[Any, Any, Any]:
    """RecBole's loaders for the split; models that score one day's graph per batch get day-grouped
    training batches (the fast path; RecBole's own loader also works, with mixed-day batches)."""
    built = (prepared.train, prepared.valid, prepared.test)
    train_sampler, valid_sampler, test_sampler = create_samplers(config, prepared.dataset, built)
    if getattr(get_model(config["model"]), "day_grouped_batches", False):
        from recbole_tasrec.data.dataloader import DayGroupedTrainDataLoader as train_loader_class
    else:
        train_loader_class = get_dataloader(config, "train")
    train = train_loader_class(config, prepared.train, train_sampler, shuffle=config["shuffle"])
    valid = eval_loader_class(config, "valid")(config, prepared.valid, valid_sampler, shuffle=False)
    test = eval_loader_class(config, "test")(config, prepared.test, test_sampler, shuffle=False)
    return train, valid, test


def _check_prepared_matches(config: Config, prepared: PreparedData) -> None:
    stale = [key for key in DATA_SET_KEYS if config[key] != prepared.dataset.config[key]]
    if stale:
        raise ValueError(
            f"the prepared data set was built with other values of {stale}; these keys shape the data set and "
            "cannot vary between runs that share it (leave them out of a search space)"
        )


def build_model(config: Config, dataset: Any, model_class: type | None = None) -> torch.nn.Module:
    """Seed, build and place a model: the one way a run, a checkpoint, a sweep or a benchmark gets one.

    Args:
        config: the run's config; its ``seed`` makes the initial weights reproducible.
        dataset: the training split (``PreparedData.train``), from which RecBole models read their sizes.
        model_class: a ready model class (default: the config's ``model``, looked up by name).
    """
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model_class = model_class or get_model(config["model"])
    return model_class(config, dataset).to(config["device"])


def evaluate_checkpoint(
    config: Config, prepared: PreparedData, checkpoint: str | os.PathLike[str], model_class: type | None = None
) -> dict[str, float]:
    """Test metrics of a saved model, as the last step of a run computes them (``evaluate(load_best_model=True)``).

    Starts a run in ``config["run_dir"]`` (its log and tensorboard files go there). Refuses a checkpoint of
    another model, data set or item mapping (:class:`~recbole_tasrec.checkpoint.CheckpointMismatchError`).
    """
    check_identity(
        run_identity(config, prepared.dataset),
        checkpoint_identity(load_trusted(checkpoint, ("config", "state_dict"))),
        checkpoint,
    )
    init_logger(config)
    _, _, test_data = make_dataloaders(config, prepared)
    trainer = ScheduledTrainer(config, build_model(config, prepared.train, model_class))
    try:
        result = trainer.evaluate(test_data, load_best_model=True, model_file=str(checkpoint), show_progress=False)
    finally:
        trainer.tensorboard.close()
    return {key: float(value) for key, value in result.items()}


def run_recbole_tasrec(
    model: str | type | None = None,
    dataset: str | None = None,
    config_file_list: list[str] | None = None,
    config_dict: dict[str, Any] | None = None,
    saved: bool = True,
    *,
    prepared: PreparedData | None = None,
    epoch_callback: EpochCallback | None = None,
    resume: str | os.PathLike[str] | None = None,
) -> dict[str, Any] | None:
    """Train and evaluate ``model`` on ``dataset`` with the day-based protocol; RecBole's ``run_recbole``.

    Args:
        model: ``"TASRec"``, any RecBole sequential model name, or a model class.
        dataset: a folder under ``data_path`` (default ``atomic_data/``).
        config_file_list, config_dict: as in RecBole.
        saved: keep the best checkpoint (and test with it).
        prepared: an already processed split (:func:`prepare_data`), e.g. shared by sweep trials.
        epoch_callback: called after each evaluation with ``(epoch, valid_result)``.
        resume: continue an interrupted run after its last finished epoch: its checkpoint (``.pth``) or the
            ``.resume`` state written next to it (:mod:`recbole_tasrec.resume`); same settings as that run.

    Returns:
        ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result``, ``test_result``, ``train_loss``
        (one per epoch), ``checkpoint`` (the best-validation model file, or ``None``) and ``continual_checkpoint``
        (with ``continual: refit | daily``, the model after the last test day, else ``None``); ``None`` on a torchrun
        process other than global rank 0.
    """
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    launch = distributed.launch_settings(config)
    if launch is not None and resume is not None:
        raise ValueError("--resume continues one-process runs only: leave out --nproc / --world_size")
    if launch is not None:  # --nproc / --world_size / torchrun: run on every process
        kwargs = {"config_file_list": config_file_list, "config_dict": config_dict, "saved": saved}
        return distributed.launch(
            launch,
            run_recbole_tasrec,
            model=model,
            dataset=dataset,
            **kwargs,
            prepared=prepared,
            epoch_callback=epoch_callback,
        )
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(config)
    if prepared is None:
        prepared = prepare_data(config)
    else:
        _check_prepared_matches(config, prepared)
    train_data, valid_data, test_data = make_dataloaders(config, prepared)

    net = build_model(config, prepared.train)
    logger.info(net)
    trainer_class = ScheduledTrainer if config["single_spec"] else distributed_trainer(ScheduledTrainer)
    trainer = trainer_class(config, net)
    if resume is not None:
        trainer.resume(train_data, find_resume_file(resume))
    best_valid_score, best_valid_result = trainer.fit_with_callback(train_data, valid_data, saved, epoch_callback)
    continual_checkpoint = None
    if continual.is_on(config, net):  # continual: refit | daily trains between the test days (continual.py)
        phase = continual.evaluate_day_by_day(trainer, prepared, saved)
        test_result, continual_checkpoint = phase.test_result, phase.checkpoint
    else:
        test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    trainer.tensorboard.close()

    logger.info(set_color("best valid ", "yellow") + f": {dict(best_valid_result)}")
    logger.info(set_color("test result", "yellow") + f": {dict(test_result)}")
    checkpoint = trainer.saved_model_file if saved and Path(trainer.saved_model_file).exists() else None
    return {
        "model": config["model"],
        "dataset": config["dataset"],
        "best_valid_score": float(best_valid_score),
        "valid_score_bigger": bool(config["valid_metric_bigger"]),
        "best_valid_result": {k: float(v) for k, v in best_valid_result.items()},
        "train_loss": [float(trainer.train_loss_dict[epoch]) for epoch in sorted(trainer.train_loss_dict)],
        "test_result": {k: float(v) for k, v in test_result.items()},
        "checkpoint": checkpoint,
        "continual_checkpoint": continual_checkpoint,
    }


def load_data_and_model(model_file: str | os.PathLike[str]) -> tuple[Any, Any, Any, Any, Any, Any]:
    """Mirror of RecBole's function: rebuild config, data and model from a checkpoint of this package.

    Returns ``(config, model, dataset, train_data, valid_data, test_data)``; the model carries the
    checkpoint's weights (and, for TASRec, its temporal graph state). Refuses a checkpoint whose data set no
    longer has the item mapping it was trained with.
    """
    checkpoint = load_trusted(model_file, required=("config", "state_dict"))
    config = checkpoint["config"]
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    prepared = prepare_data(config)
    check_identity(run_identity(config, prepared.dataset), checkpoint_identity(checkpoint), model_file)  # data edited?
    train_data, valid_data, test_data = make_dataloaders(config, prepared)
    net = build_model(config, prepared.train)
    net.load_state_dict(checkpoint["state_dict"])
    net.load_other_parameter(checkpoint.get("other_parameter"))
    return config, net, prepared.dataset, train_data, valid_data, test_data
