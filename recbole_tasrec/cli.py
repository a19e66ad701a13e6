"""The command line: ``python run_recbole_tasrec.py`` (and the ``recbole-tasrec`` script).

Its own flags are parsed here; every other ``--key=value`` is a RecBole setting and wins over the yaml files,
as on RecBole's own command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from recbole_tasrec.data.sources import MissingDataError, check_data


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_recbole_tasrec.py",
        description="Train and evaluate TASRec or any RecBole sequential model with the day-based protocol. "
        "Any other --key=value is a RecBole setting (e.g. --epochs=5 --embedding_size=64).",
    )
    parser.add_argument(
        "--model",
        "-m",
        default=None,
        help="TASRec or a RecBole model name (default: the config files' model, or TASRec)",
    )
    parser.add_argument(
        "--dataset",
        "-d",
        default=None,
        help="a folder under atomic_data/ (default: the config files' dataset, or sample)",
    )
    parser.add_argument("--config_files", default=None, help="space-separated yaml files, as in RecBole")
    parser.add_argument("--result-json", type=Path, default=None, help="write the run's results to this JSON file")
    parser.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="continue an interrupted run after its last finished epoch: the checkpoint (.pth) it wrote, or the "
        ".resume file next to it; give the same settings as that run",
    )
    parser.add_argument(
        "--tune",
        action="store_true",
        help="an alias of python -m recbole_tasrec.tune: run a Ray Tune sweep instead, with every other argument "
        "(see --tune --help)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--tune" in argv:
        from recbole_tasrec.tune import main as tune_main

        return tune_main([arg for arg in argv if arg != "--tune"], prog=f"{build_parser().prog} --tune")
    args, overrides = build_parser().parse_known_args(argv)
    from recbole_tasrec.checkpoint import CheckpointError
    from recbole_tasrec.config import Config, parse_overrides
    from recbole_tasrec.data.atomic import AtomicFileError
    from recbole_tasrec.data.dataset import DataSplitError
    from recbole_tasrec.quick_start import dataset_class, run_recbole_tasrec
    from recbole_tasrec.resume import find_resume_file
    from recbole_tasrec.safe_write import WriteError, write_json

    config_files = args.config_files.split() if args.config_files else None
    try:
        settings = parse_overrides(overrides)
        config = Config(args.model, args.dataset, config_files, settings)
        dataset_class(config)  # a non-sequential model is refused here, before any work
        check_data(config["data_path"], config["dataset"])
        if args.resume is not None:
            find_resume_file(args.resume)
    except (ValueError, MissingDataError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        resume = {"resume": args.resume} if args.resume is not None else {}
        result = run_recbole_tasrec(config["model"], config["dataset"], config_files, settings, **resume)
    except (CheckpointError, AtomicFileError, DataSplitError, WriteError) as err:  # wrong --resume; bad data; full disk
        print(f"error: {err}", file=sys.stderr)
        return 2
    if result is None:  # a process of a torchrun job other than global rank 0: rank 0 reports
        return 0
    print(f"test  : {json.dumps(result['test_result'])}")
    if args.result_json:
        try:
            write_json(args.result_json, result)
        except WriteError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    return 0
