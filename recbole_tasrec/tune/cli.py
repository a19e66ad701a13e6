"""``python -m recbole_tasrec.tune``: a Ray Tune sweep. ``python run_recbole_tasrec.py --tune`` is its alias: the
runner hands every other argument to :func:`main` here, so both names share this parser and its behaviour."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recbole_tasrec.config import parse_overrides, properties_dir
from recbole_tasrec.tune.space import Param, SearchSpaceError, load_search_space
from recbole_tasrec.tune.spec import (
    SPEC_FILE,
    SweepError,
    SweepOptions,
    SweepSpec,
    build_spec,
    check_model,
    default_output_dir,
    driver_config,
    load_spec,
)

EXAMPLES = """\
examples:
  # 4 random trials of TASRec's default space on the demo data, 2 epochs each, on this machine
  python -m recbole_tasrec.tune --dataset sample --num-samples 4 --max-epochs 2
  # the paper's grid (embedding_size x n_layers, 20 trials)
  python -m recbole_tasrec.tune --dataset retailrocket --search paper
  # a RecBole baseline on the same split, on a running Ray cluster with shared storage
  python -m recbole_tasrec.tune --model SRGNN --address auto --storage-path /mnt/shared/sweeps
  # continue an interrupted sweep
  python -m recbole_tasrec.tune --resume --output-dir runs/tune/TASRec-sample-20260101-120000

Any other --key=value is a RecBole setting fixed for every trial (e.g. --train_batch_size=256).
"python run_recbole_tasrec.py --tune ..." is an alias of this command.
"""
PROG = "python -m recbole_tasrec.tune"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The sweep's parser; ``prog`` is the name it was called by (the runner's ``--tune`` alias passes its own)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Search hyperparameters with Ray Tune: each trial is a run_recbole_tasrec run on the "
        "day-based split, reporting its validation metrics every epoch. Ends with a table of the trials ranked "
        "by the validation metric, best.yaml and the best configuration's test metrics.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # a RecBole --key=value must never be taken for an abbreviated flag
    )
    what = parser.add_argument_group("what to search")
    what.add_argument("--model", "-m", default="TASRec", help="TASRec or a RecBole sequential model (default TASRec)")
    what.add_argument("--dataset", "-d", default="sample", help="a folder under data_path (default sample)")
    what.add_argument("--config_files", default=None, help="space-separated RecBole yaml files, fixed for all trials")
    what.add_argument(
        "--search",
        default="default",
        metavar="default|paper|FILE",
        help="the search space: default = properties/hyper/<Model>.yaml, paper = the paper's grid "
        "(properties/hyper/<Model>-paper.yaml), or a file in this package's yaml format or RecBole's hyper format",
    )
    what.add_argument(
        "--num-samples",
        type=int,
        default=None,
        help="samples of the search space (default 10 if it samples at random, else 1). With a grid, each "
        "sample repeats the whole grid, as in Ray Tune (--search paper --num-samples 2: 40 trials)",
    )
    what.add_argument("--max-epochs", type=int, default=None, help="epochs per trial (default: the config's epochs)")
    what.add_argument(
        "--metric", default=None, help="validation metric to optimise, e.g. NDCG@20 (default: valid_metric, Recall@20)"
    )
    how = parser.add_argument_group("how to run it")
    how.add_argument(
        "--scheduler",
        choices=["asha", "fifo"],
        default="asha",
        help="asha: stop poor trials early (Ray's ASHA over epochs); fifo: run every trial to the end",
    )
    how.add_argument("--grace-period", type=int, default=1, help="ASHA: epochs before a trial may be stopped (1)")
    how.add_argument("--reduction-factor", type=float, default=4, help="ASHA: keep 1/this of trials per rung (4)")
    how.add_argument("--cpus-per-trial", type=float, default=1, help="CPUs reserved per trial (default 1)")
    how.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        help="GPUs per trial (default 1 if the Ray cluster has a GPU, else 0; asking for more than it has is an error)",
    )
    how.add_argument("--max-concurrent", type=int, default=None, help="trials at once (default: as resources allow)")
    how.add_argument("--max-failures", type=int, default=1, help="retries of a crashed trial (default 1)")
    where = parser.add_argument_group("where")
    where.add_argument(
        "--address",
        default=None,
        help="join a running Ray cluster (auto, HOST:PORT or ray://HOST:PORT) instead of starting a local Ray",
    )
    folder = where.add_mutually_exclusive_group()
    folder.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="the sweep's folder (default <run_dir>/tune/<Model>-<dataset>-<time>)",
    )
    folder.add_argument(
        "--storage-path",
        default=None,
        help="a folder that every node of a multi-node cluster mounts at the same path (Ray no longer syncs trial "
        "folders to the head); the sweep's folder is created inside it, named --name",
    )
    where.add_argument("--name", default=None, help="the sweep's folder name under --storage-path")
    where.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted sweep in --output-dir (its settings come from its sweep.json)",
    )
    where.add_argument("--verbose", action="store_true", help="show Ray's progress and the trials' own output")
    return parser


def search_space_file(search: str, model: str) -> Path:
    """The file ``--search`` names."""
    hyper = properties_dir() / "hyper"
    if search == "default":
        path = hyper / f"{model}.yaml"
        if not path.is_file():
            raise SearchSpaceError(f"no search space for {model}: write {path} or pass --search FILE")
        return path
    if search == "paper":
        path = hyper / f"{model}-paper.yaml"
        if not path.is_file():
            raise SearchSpaceError(f"the paper's grid is defined for TASRec only ({path} does not exist)")
        return path
    return Path(search)


def _output_dir(args: argparse.Namespace, default: Path) -> Path:
    if args.output_dir is not None:
        return args.output_dir.resolve()
    if args.storage_path is not None:
        if "://" in args.storage_path:  # the trials write their RecBole logs and checkpoints there directly
            raise SweepError(f"--storage-path {args.storage_path}: use a folder that every node mounts, not a URI")
        return Path(args.storage_path).resolve() / (args.name or default.name)
    return default.parent / args.name if args.name else default


def _options(args: argparse.Namespace) -> SweepOptions:
    return SweepOptions(
        num_samples=args.num_samples,
        scheduler=args.scheduler,
        grace_period=args.grace_period,
        reduction_factor=args.reduction_factor,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent,
        max_failures=args.max_failures,
        verbose=args.verbose,
    )


def _plan(args: argparse.Namespace, rest: list[str]) -> tuple[SweepSpec, Path]:
    """The sweep the arguments describe and its folder, checked without Ray (raises :class:`SweepError`)."""
    if args.resume:
        if args.output_dir is None and not (args.storage_path and args.name):
            raise SweepError("--resume needs the sweep's folder: --output-dir DIR (or --storage-path and --name)")
        output_dir = _output_dir(args, Path())
        return load_spec(output_dir), output_dir
    try:
        overrides = parse_overrides(rest)
    except ValueError as err:
        raise SweepError(str(err)) from None
    if args.metric:
        overrides["valid_metric"] = args.metric
    check_model(args.model)
    space: dict[str, Param] = load_search_space(search_space_file(args.search, args.model))
    config_files = args.config_files.split() if args.config_files else []
    spec, config = build_spec(args.model, args.dataset, space, config_files, overrides, args.max_epochs)
    output_dir = _output_dir(args, default_output_dir(config, spec.model, spec.dataset))
    if (output_dir / SPEC_FILE).exists():
        raise SweepError(f"{output_dir} already holds a sweep: add --resume, or choose another --output-dir")
    return spec, output_dir


def _run(spec: SweepSpec, output_dir: Path, args: argparse.Namespace) -> Any:
    """Run the planned sweep on a local Ray or the cluster at ``--address``; returns its report."""
    import ray

    from recbole_tasrec.quick_start import prepare_data
    from recbole_tasrec.tune.ray_env import check_resources, init_ray
    from recbole_tasrec.tune.report import summarize
    from recbole_tasrec.tune.sweep import run_sweep

    options = _options(args)
    prepared = prepare_data(driver_config(spec.model, spec.dataset, spec.config_files, spec.settings))
    started = not ray.is_initialized()
    if started:
        init_ray(args.address, verbose=args.verbose)
    try:
        options.gpus_per_trial = check_resources(options.cpus_per_trial, options.gpus_per_trial)
        print(
            f"sweep: {spec.model} on {spec.dataset}, a search space of {len(spec.space)} settings, up to "
            f"{spec.max_epochs} epochs per trial, ranked by validation {spec.metric}; folder {output_dir}",
            flush=True,
        )
        run_sweep(spec, output_dir, options, resume=args.resume, prepared=prepared)
        return summarize(spec, output_dir, prepared)
    finally:
        if started:
            ray.shutdown()


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Run the sweep the arguments describe: 0 on success, 2 on a usage error, 1 if every trial failed, 130 if
    it was interrupted. Ray is imported only once the arguments are checked."""
    args, rest = build_parser(prog).parse_known_args(argv)
    try:
        spec, output_dir = _plan(args, rest)
        report = _run(spec, output_dir, args)
    except (SweepError, SearchSpaceError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from recbole_tasrec.tune.report import format_report

    print(format_report(report, spec))
    if report.unfinished:
        return 130  # interrupted (Ctrl+C); --resume continues
    return 0 if report.best is not None else 1
