"""Where each known data set comes from, and the check that its atomic file is there before a run or a sweep.

Below both the command line and the sweeps (neither imports the other); knows file names and commands, not RecBole.
"""

from __future__ import annotations

import shlex
from pathlib import Path

#: How to get each known data set's atomic file (the raw files cannot be downloaded for you).
DATA_SOURCES = {
    "retailrocket": (
        "download events.csv from https://www.kaggle.com/datasets/retailrocket/ecommerce-dataset",
        "uv run python -m recbole_tasrec.data.convert retailrocket --input events.csv --output-dir atomic_data",
    ),
    "diginetica": (
        "download train-item-views.csv (CIKM Cup 2016) from https://competitions.codalab.org/competitions/11161",
        "uv run python -m recbole_tasrec.data.convert diginetica --input train-item-views.csv --output-dir atomic_data",
    ),
    "aotm": (
        "download playlists-aotm.csv (session-rec) or aotm2011_playlists.json.gz from "
        "https://bmcfee.github.io/data/aotm2011.html",
        "uv run python -m recbole_tasrec.data.convert aotm --input aotm2011_playlists.json.gz --output-dir atomic_data",
    ),
    "sample": (
        "the demo set is committed; regenerate it if it was deleted",
        "uv run python -m recbole_tasrec.data.synthetic --output-dir atomic_data",
    ),
}


class MissingDataError(FileNotFoundError):
    """The data set's atomic file is not where the config says."""


def check_data(data_path: str | Path, dataset: str) -> Path:
    """The atomic file of ``dataset``, or a :class:`MissingDataError` that says how to get it."""
    path = Path(data_path) / f"{dataset}.inter"
    if path.is_file():
        return path
    output_dir = shlex.quote(str(Path(data_path).parent))
    source, convert = DATA_SOURCES.get(
        dataset,
        (
            "bring your click log as a CSV",
            f"uv run python -m recbole_tasrec.data.convert csv --input LOG.csv "
            f"--session-col S --item-col I --time-col T --name {dataset} --output-dir atomic_data",
        ),
    )
    convert = convert.replace("--output-dir atomic_data", f"--output-dir {output_dir}")
    raise MissingDataError(f"data set {dataset!r} not found: {path} does not exist.\n  1. {source}\n  2. {convert}")
