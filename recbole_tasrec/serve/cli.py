"""``python -m recbole_tasrec.serve {export,recommend,advance,http}``: serve any model the runner trains (TASRec,
RecBole's sequential models, LESSR, CSRM, SKNN, V-SKNN, STAN).

    export     --checkpoint C --output DIR            a RecBole checkpoint -> a safe serving artefact (a kNN
                                                      model's index is rebuilt from the run's data set)
    recommend  --model DIR --input S.csv --k 20 --output R.csv
    advance    --model DIR --input DAY.csv|.inter     fold a finished day in: the artefact is written first,
               [--train --train-epochs N              a day folded in already is refused; --train also trains
                --learning-rate R]                    a neural model's weights on the day
    http       --model DIR --port 8000                the HTTP service (needs the ``serve`` extra); /advance and
                                                      /docs are off unless --advance-token-file / --docs

Each command ends with a one-line summary; a bad input stops it with one line that says what is wrong
(exit status 2) and leaves no partial output.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from recbole_tasrec.safe_write import atomic_path
from recbole_tasrec.serve.artifact import ArtifactError
from recbole_tasrec.serve.day_training import TrainOptions
from recbole_tasrec.serve.models import load_artifact, load_checkpoint
from recbole_tasrec.serve.ranking import CHUNK, Ranked, Ranker
from recbole_tasrec.serve.served import ServedModel
from recbole_tasrec.serve.session_file import SessionFileError, read_sessions


def _add_input(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="clicks: a CSV with a header, or a RecBole .inter file")
    parser.add_argument("--sep", default=None, help="field separator (default: ',' for CSV, tab for .inter)")
    parser.add_argument("--session-col", default="session_id", help="session id column (default: session_id)")
    parser.add_argument("--item-col", default="item_id", help="item id column (default: item_id)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m recbole_tasrec.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="threads of torch and of NumPy's BLAS (default: 1)")
    parser.add_argument(
        "--bounded-topk-above",
        type=int,
        default=None,
        help="rank by the exact int8-bounded scan above this many items (default: 200000; 0: never)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    export = commands.add_parser("export", help="write a safe serving artefact from a RecBole checkpoint")
    export.add_argument("--checkpoint", required=True, help="a .pth written by run_recbole_tasrec (trusted)")
    export.add_argument("--output", required=True, help="the artefact folder to write (new, or an artefact)")

    recommend = commands.add_parser("recommend", help="top-k next items for every session of a click file")
    recommend.add_argument("--model", required=True, help="a serving artefact folder")
    _add_input(recommend)
    recommend.add_argument("--k", type=int, default=20, help="recommendations per session (default: 20)")
    recommend.add_argument("--exclude-seen", action="store_true", help="never recommend an item of the session")
    recommend.add_argument("--output", required=True, help="CSV: session_id, rank, item_id, score")

    advance = commands.add_parser("advance", help="fold a finished day of sessions into the served model")
    advance.add_argument("--model", required=True, help="a serving artefact folder (saved again in place)")
    _add_input(advance)
    advance.add_argument("--output", default=None, help="save the advanced artefact here instead of --model")
    advance.add_argument(
        "--train", action="store_true", help="also train a neural model's weights on the day (continual's daily step)"
    )
    advance.add_argument(
        "--train-epochs", type=int, default=None, help="passes over the day with --train (default: continual_epochs)"
    )
    advance.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="constant rate with --train (default: the artefact's continual_learning_rate)",
    )

    http = commands.add_parser("http", help="the HTTP service (POST /recommend, POST /advance, GET /health)")
    http.add_argument("--model", required=True, help="a serving artefact folder")
    http.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 exposes it: see the README)",
    )
    http.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    http.add_argument(
        "--advance-token-file",
        type=Path,
        default=None,
        help="enable POST /advance for requests with 'Authorization: Bearer <the token in this file>' (default: off)",
    )
    http.add_argument("--docs", action="store_true", help="serve the API docs at /docs (default: off)")
    http.add_argument("--max-body-mb", type=float, default=None, help="largest request body read (default: 32 MiB)")
    http.add_argument(
        "--no-save", action="store_true", help="serve each advance without saving it (a restart loses it)"
    )
    http.add_argument("--access-log", action="store_true", help="log every request (slower)")
    http.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes answering requests, sharing the loaded model; they reload it when the advance command has "
        "replaced it (default: 1; at most one per core, each with its own socket; no /advance)",
    )
    return parser


def _write_csv_atomically(frame, output: Path) -> None:
    """Write to a temporary file next to ``output``, then rename: never a half-written file."""
    with atomic_path(output) as temporary:
        frame.to_csv(temporary, index=False)


def _loaded(args: argparse.Namespace) -> ServedModel:
    """The served artefact, with ``--bounded-topk-above`` applied."""
    above = args.bounded_topk_above
    if above is not None and above < 0:
        raise ValueError(f"--bounded-topk-above must be 0 (never) or a number of items, got {above}")
    recommender = load_artifact(args.model)
    if above is not None:
        recommender.bounded_topk_above = above
    return recommender


def run_export(args: argparse.Namespace) -> str:
    if not Path(args.checkpoint).is_file():
        raise ValueError(f"{args.checkpoint} does not exist: pass a .pth checkpoint written by run_recbole_tasrec")
    try:
        recommender = load_checkpoint(args.checkpoint)
    except (pickle.UnpicklingError, KeyError, EOFError, AttributeError, TypeError) as error:
        raise ValueError(f"{args.checkpoint} is not a checkpoint of this package ({error!r})") from error
    path = recommender.save(args.output)
    return f"exported {len(recommender.item_tokens) - 1} items at day {recommender.day} to {path}"


def run_recommend(args: argparse.Namespace) -> str:
    if args.k < 1:
        raise ValueError(f"--k must be at least 1, got {args.k}")
    table = read_sessions(args.input, args.sep, args.session_col, args.item_col)
    ranker = Ranker(_loaded(args))
    n_items = len(ranker.tokens) - 1
    if args.k > n_items:
        raise ValueError(f"--k {args.k} is more than the {n_items} items of the model: give at most {n_items}")
    ranked = Ranked([], [], [])
    for start in tqdm(range(0, len(table), CHUNK), desc="recommend", unit="batch", disable=len(table) <= CHUNK):
        part = ranker.rank(table.sessions(start, start + CHUNK), args.k, args.exclude_seen)
        ranked.items += part.items
        ranked.scores += part.scores
        ranked.unknown += part.unknown
    _write_csv_atomically(ranker.frame(table.session_ids, ranked), Path(args.output))
    empty = sum(not row for row in ranked.items)
    unknown = len({item for row in ranked.unknown for item in row})
    return (
        f"{len(table)} sessions, {len(table.items)} clicks -> {args.output}; {unknown} unknown item ids skipped, "
        f"{empty} sessions without recommendations"
    )


def run_advance(args: argparse.Namespace) -> str:
    if not args.train and (args.train_epochs is not None or args.learning_rate is not None):
        raise ValueError("--train-epochs and --learning-rate set how --train trains: add --train")
    train = TrainOptions(args.train_epochs, args.learning_rate) if args.train else None
    table = read_sessions(args.input, args.sep, args.session_col, args.item_col)
    recommender = load_artifact(args.model)
    if train is not None:
        recommender.training(train)  # a model without weights, a bad --train-epochs or rate: before any work
    items = pd.Series(table.items)
    unknown = items[~items.isin(recommender.item_tokens[1:])].unique()
    before = recommender.day
    path = Path(args.output or args.model)
    advance = recommender.advance_and_save(table.sessions(), path, train)  # written (fsync, rename) before it counts
    counts = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in advance.counts.items())
    return (
        f"day {before} -> {recommender.day}: {len(table)} sessions, {len(table.items)} clicks, {counts}, "
        f"{len(unknown)} new item ids skipped (unknown to the model); saved {path}"
    )


def run_http(args: argparse.Namespace) -> str:
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    if args.workers > 1 and args.advance_token_file is not None:
        raise ValueError(
            "--advance-token-file needs --workers 1: an advance would change one worker's model only "
            "(with several workers, fold a day in with the advance command: the workers reload the artefact)"
        )
    try:
        import uvicorn  # noqa: F401 - the serve extra, checked before the model is loaded

        from recbole_tasrec.serve.http import create_app, serve
    except ImportError as error:
        raise RuntimeError(
            f"the HTTP service needs the 'serve' extra ({error.name} is missing): pip install 'recbole-tasrec[serve]'"
        ) from error
    token = None
    if args.advance_token_file is not None:
        token = args.advance_token_file.read_text(encoding="utf-8").strip()
    limit = {} if args.max_body_mb is None else {"max_body_bytes": int(args.max_body_mb * 2**20)}
    if limit and limit["max_body_bytes"] < 1:
        raise ValueError(f"--max-body-mb must be positive, got {args.max_body_mb}")
    recommender = _loaded(args)
    app = create_app(
        recommender,
        None if args.no_save else args.model,
        advance_token=token,
        docs=args.docs,
        reload_from=args.model if args.workers > 1 else None,
        **limit,
    )
    workers = f" with {args.workers} workers" if args.workers > 1 else ""
    print(f"serving {args.model} (day {recommender.day}) on http://{args.host}:{args.port}{workers}", file=sys.stderr)
    serve(app, args.host, args.port, args.workers, args.access_log)
    return "stopped"


COMMANDS = {"export": run_export, "recommend": run_recommend, "advance": run_advance, "http": run_http}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads < 1:
        print(f"error: --threads must be at least 1, got {args.threads}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)  # NumPy's BLAS too: TASRec's session encoder and the kNN models use it
    try:
        print(COMMANDS[args.command](args))
    except (ArtifactError, SessionFileError, ValueError, RuntimeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
