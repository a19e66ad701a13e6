"""A user's own plain RecBole script training TASRec, run by ``tests/test_plain_recbole.py`` in a subprocess.

It uses only RecBole's public API (``Config``, ``data_preparation``, ``Trainer``) plus this package's dataset and
model classes, the way RecBole's documentation shows for a custom model; RecBole writes its log, tensorboard run
and checkpoint where it documents (``./log``, ``./log_tensorboard``, ``./saved``). Run it as

    python tests/plain_recbole_script.py --data_path=DIR --run_dir=DIR [--key=value ...]

RecBole's ``Config`` reads the ``--key=value`` arguments from ``sys.argv`` itself. The script prints one line
per epoch, and the run's results as JSON on its last line: ``train_loss`` (one per epoch), ``best_valid_result``,
``test_result``, ``n_items``, ``train_batches``, ``mixed_day_batches`` (training batches holding several days) and
``checkpoint`` (the saved best model, which the test evaluation reloads).
"""

from __future__ import annotations

import json
from pathlib import Path

import recbole_tasrec  # noqa: F401  (its module-level RecBole fixes apply as RecBole's modules load)

# isort: split
import torch
from recbole.config import Config
from recbole.data import data_preparation
from recbole.trainer import Trainer
from recbole.utils import init_logger, init_seed

from recbole_tasrec.data import DaySplitDataset
from recbole_tasrec.model import TASRec

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    config = Config(
        model=TASRec,
        dataset="tiny",
        # Config(model=TASRec) does not find the package's yaml files by itself: a plain script names them.
        config_file_list=[
            str(ROOT / "properties" / "overall.yaml"),
            str(ROOT / "properties" / "model" / "TASRec.yaml"),
        ],
        config_dict={
            "epochs": 3,
            "learning_rate": 0.005,  # the tiny set needs a faster rate than the paper's 1e-3 to learn in 3 epochs
            "embedding_size": 32,
            "n_layers": 1,
            "train_batch_size": 64,
            "eval_batch_size": 256,
            "show_progress": False,
            "state": "WARNING",
            "seed": 7,
        },
    )
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = DaySplitDataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)  # RecBole's loader: batches mix days
    init_seed(config["seed"], config["reproducibility"])
    model = TASRec(config, train_data._dataset).to(config["device"])
    trainer = Trainer(config, model)
    best_valid_score, best_valid_result = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    trainer.tensorboard.close()

    day = config["DAY_FIELD"]
    mixed_day_batches = sum(len(torch.unique(batch[day])) > 1 for batch in train_data)
    losses = [float(trainer.train_loss_dict[epoch]) for epoch in sorted(trainer.train_loss_dict)]
    for epoch, loss in enumerate(losses):
        print(f"epoch {epoch}: train loss {loss:.4f}")
    print(
        json.dumps(
            {
                "train_loss": losses,
                "best_valid_result": {k: float(v) for k, v in best_valid_result.items()},
                "test_result": {k: float(v) for k, v in test_result.items()},
                "n_items": int(dataset.item_num),
                "train_batches": len(train_data),
                "mixed_day_batches": int(mixed_day_batches),
                "checkpoint": trainer.saved_model_file,
            }
        )
    )


if __name__ == "__main__":
    main()
