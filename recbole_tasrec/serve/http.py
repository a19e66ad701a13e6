"""The HTTP service: ``POST /recommend``, ``POST /advance``, ``GET /health`` on FastAPI (the ``serve`` extra).

``POST /recommend`` scores the requests that arrive together in one call (:class:`Batcher`) on a worker
thread, so ``/health`` stays responsive; a failing request fails alone. ``POST /advance`` and ``/docs`` are off
unless enabled (``advance_token``, ``docs``); ``/advance`` then needs ``Authorization: Bearer <token>``.
``POST /advance`` folds a finished day in on a worker thread, one advance at a time: the next state is built
aside, written to the artefact folder (fsync, rename), and only then swapped in by one assignment
(:meth:`~recbole_tasrec.serve.served.ServedModel.advance_and_save`). Every request is answered from the old
state or the new one, its ``day`` and scores from the same one; a failed save leaves the served model and the
artefact unchanged and answers 507 (a full disk) or 500 with a one-line reason; a day folded in already gets 409.
Started without a folder to save to (``--no-save``), an advance is served at once and never saved.

Bad requests get HTTP 422 with the reason: malformed JSON, an empty session, ``k`` below 1 or above the item
count, too many sessions or clicks, an item id longer than :data:`MAX_ITEM_ID`; a body over the limit gets 413
before it is read. Unknown item ids are skipped and reported.

Several worker processes (:func:`serve`, ``--workers``) share the loaded model; they serve no ``/advance`` and
follow the artefact folder instead (:class:`ArtefactWatcher`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import hmac
import logging
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from recbole_tasrec.safe_write import WriteError
from recbole_tasrec.serve.artifact import package_version
from recbole_tasrec.serve.day_training import TrainOptions
from recbole_tasrec.serve.ranking import CHUNK, Ranker
from recbole_tasrec.serve.served import DayAlreadyFolded, ServedModel

try:  # the serve extra's faster JSON writer; the standard library's otherwise
    import orjson
except ImportError:  # pragma: no cover - depends on the installed extras
    orjson = None

logger = logging.getLogger(__name__)

MAX_ITEM_ID = 1000  # characters in one item id
MAX_SESSION = 10_000  # clicks in one session (only the last MAX_ITEM_LIST_LENGTH known ones are used)
MAX_SESSIONS = CHUNK  # sessions in one /recommend request: one scoring call, so one graph answers them all
MAX_DAY_CLICKS = 10_000_000  # clicks in one /advance request
MIN_TOKEN = 16  # characters of the /advance token
MAX_BODY_BYTES = 32 * 2**20  # default limit of a request body, checked before it is read (--max-body-mb)
INLINE_SCORES = 2**20  # a batch of at most this many scores (sessions x items) is scored on the event loop

ItemId = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ITEM_ID)] | StrictInt
Session = Annotated[list[ItemId], Field(min_length=1, max_length=MAX_SESSION)]


class RecommendRequest(BaseModel):
    """One or many sessions of raw item ids, in click order."""

    model_config = ConfigDict(extra="forbid")
    sessions: Annotated[list[Session], Field(min_length=1, max_length=MAX_SESSIONS)]
    k: Annotated[int, Field(ge=1)] = 20
    exclude_seen: bool = False


class AdvanceRequest(BaseModel):
    """A finished day's sessions (an empty list is an empty day: the graph only decays)."""

    model_config = ConfigDict(extra="forbid")
    sessions: list[Session]
    # --- training on the day (serve.day_training): a neural model's weights, trained aside, swapped in with the day
    train: bool = False
    train_epochs: Annotated[int, Field(ge=1)] | None = None
    learning_rate: Annotated[float, Field(gt=0)] | None = None


class Service:
    """The served model, the artefact folder it saves to, and the lock that keeps advances one at a time."""

    def __init__(self, recommender: ServedModel, save_to: str | Path | None = None) -> None:
        self.recommender = recommender
        self.ranker = Ranker(recommender)
        self.save_to = None if save_to is None else Path(save_to)
        self._advance_lock = threading.Lock()

    def replace(self, recommender: ServedModel) -> None:
        """Serve ``recommender`` from now on (an artefact reloaded): a request reads the ranker once, so it is
        answered wholly by the old model or wholly by the new one."""
        self.ranker = Ranker(recommender)
        self.recommender = recommender

    def health(self) -> dict[str, object]:
        return {
            "status": "ok",
            "version": package_version(),
            "day": self.recommender.day,
            "n_items": len(self.ranker.tokens) - 1,  # without the padding item
        }

    def recommend(self, requests: list[RecommendRequest]) -> list[dict[str, object]]:
        """Answer requests of at most CHUNK sessions in all with one scoring call, from one state."""
        sessions = [[str(item) for item in session] for request in requests for session in request.sessions]
        ks = [request.k for request in requests for _ in request.sessions]
        excluding = [request.exclude_seen for request in requests for _ in request.sessions]
        ranked = self.ranker.rank(sessions, ks, excluding)  # self.ranker read once: a reload may replace it
        day = ranked.day  # the day of the state that gave the scores, never read apart from them
        results = [
            {"items": items, "scores": scores, "unknown_items": unknown}
            for items, scores, unknown in zip(ranked.items, ranked.scores, ranked.unknown, strict=True)
        ]
        cuts = np.cumsum([0, *(len(request.sessions) for request in requests)])
        return [{"day": day, "results": results[a:b]} for a, b in zip(cuts[:-1], cuts[1:], strict=True)]

    def advance(self, request: AdvanceRequest) -> dict[str, object]:
        sessions = [[str(item) for item in session] for session in request.sessions]
        clicks = sum(len(session) for session in sessions)
        if clicks > MAX_DAY_CLICKS:
            raise HTTPException(422, f"a day of {clicks} clicks is over the limit of {MAX_DAY_CLICKS}: split it")
        ids, _, flat = self.ranker.encode(sessions)
        with self._advance_lock:
            try:
                train = TrainOptions(request.train_epochs, request.learning_rate) if request.train else None
                advance = self.recommender.advance_and_save(sessions, self.save_to, train)
            except DayAlreadyFolded as error:
                raise HTTPException(409, str(error)) from error
            except WriteError as error:  # nothing changed: the served model and the artefact are the old ones
                full = getattr(error.__cause__, "errno", None) == errno.ENOSPC or "disk full?" in str(error)
                raise HTTPException(507 if full else 500, f"{error}; the served model is unchanged") from error
            except ValueError as error:  # a model without weights asked to train, a bad rate in the artefact
                raise HTTPException(422, str(error)) from error
        return {
            "day": advance.state.day,
            "sessions": len(sessions),
            "clicks": clicks,
            **advance.counts,
            "unknown_items": int(len(set(flat[ids == 0].tolist()))),
            "saved": None if self.save_to is None else str(self.save_to),
        }


class FastJSON(JSONResponse):
    """A JSON answer written by orjson when it is installed (the ``serve`` extra), else by the standard library."""

    def render(self, content: Any) -> bytes:
        return super().render(content) if orjson is None else orjson.dumps(content)


def invalid_response(error: ValidationError | RequestValidationError) -> JSONResponse:
    """HTTP 422 with the reasons, without the input: an echo could be huge, or hold values JSON cannot write."""
    body = isinstance(error, ValidationError)  # read by model_validate_json: its places are in the body
    reasons = [
        {"loc": ["body", *e["loc"]] if body else list(e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in error.errors()
    ]
    return JSONResponse({"detail": reasons}, status_code=422)


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads ``model`` itself (shown by ``/docs``)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


class BodyLimit:
    """ASGI middleware refusing a request body over ``limit`` bytes with HTTP 413 before reading it: at once
    from its ``Content-Length``, or as soon as a streamed (chunked) body passes the limit."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            return await JSONResponse({"detail": self.detail}, status_code=413)(scope, receive, send)
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # the route's body reader passes an HTTPException on: the app answers 413
                raise HTTPException(413, self.detail)
            return message

        await self.app(scope, counted, send)

    @property
    def detail(self) -> str:
        return f"the request body is over the limit of {self.limit} bytes (--max-body-mb)"


class Batcher:
    """Scores together the ``/recommend`` requests that arrive while others are being scored.

    One scoring call reads the whole item table (16 MB at 40,000 x 100) whatever the number of sessions, so
    under load a batch of requests costs little more than one. A batch holds at most CHUNK sessions: one
    scoring call, one graph. Requests are answered in arrival order; a failing request fails alone.

    A small batch (at most :data:`INLINE_SCORES` scores: 26 sessions at 40,000 items, a few ms here; one session
    at a million items, ~20 ms on the int8 path) is scored on the event loop itself: handing it to a worker
    thread cost more than scoring it (the two threads take turns at the GIL for every small torch call), and
    the requests that arrive meanwhile wait in the socket to form the next batch. A larger batch is scored on a
    worker thread, so ``/health`` and the parsing of other requests never wait for it (benchmarks/README.md,
    serving).
    """

    def __init__(self, service: Service) -> None:
        self.service = service
        self.pending: list[tuple[RecommendRequest, asyncio.Future]] = []
        self.task: asyncio.Task | None = None

    async def submit(self, request: RecommendRequest) -> dict[str, object]:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((request, future))
        if self.task is None:
            self.task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self.pending:
                await asyncio.sleep(0)  # the requests received meanwhile join this batch
                batch = self._take()
                requests = [request for request, _ in batch]
                scores = sum(len(request.sessions) for request in requests) * len(self.service.ranker.tokens)
                if scores <= INLINE_SCORES:
                    answers = self._answer(requests)
                else:
                    answers = await run_in_threadpool(self._answer, requests)
                for (_, future), answer in zip(batch, answers, strict=True):
                    if not future.done():
                        future.set_exception(answer) if isinstance(answer, Exception) else future.set_result(answer)
        finally:
            self.task = None

    def _answer(self, requests: list[RecommendRequest]) -> list[dict[str, object] | Exception]:
        """The batch's answers, scored on a worker thread (the event loop keeps answering ``/health``). If the
        batch fails, each request is scored alone: one bad request fails itself, never the others."""
        try:
            return list(self.service.recommend(requests))
        except Exception as error:  # noqa: BLE001 - handed to the waiting request
            if len(requests) == 1:
                return [error]
        return [answer for request in requests for answer in self._answer([request])]

    def _take(self) -> list[tuple[RecommendRequest, asyncio.Future]]:
        batch, total = [], 0
        while self.pending and (not batch or total + len(self.pending[0][0].sessions) <= CHUNK):
            batch.append(self.pending.pop(0))
            total += len(batch[-1][0].sessions)
        return batch


class ArtefactWatcher:
    """Reloads the served model when the artefact folder's ``meta.json`` is replaced (by the ``advance`` command:
    an atomic rename, so a new file): how several worker processes follow the days folded in. Checked every
    ``interval`` seconds on the event loop, read on a worker thread; an artefact caught mid-rename or unreadable is
    logged and tried again at the next check, the served model unchanged meanwhile."""

    def __init__(self, service: Service, directory: str | os.PathLike[str], interval: float = 1.0) -> None:
        self.service, self.directory, self.interval = service, Path(directory), interval
        self.seen = self._version()

    def _version(self) -> tuple[int, int] | None:
        try:
            stat = (self.directory / "meta.json").stat()
        except OSError:  # the folder is being replaced: look again at the next check
            return None
        return stat.st_ino, stat.st_mtime_ns

    async def run(self) -> None:
        from recbole_tasrec.serve.models import load_artifact

        while True:
            await asyncio.sleep(self.interval)
            version = self._version()
            if version is None or version == self.seen:
                continue
            try:
                recommender = await run_in_threadpool(load_artifact, self.directory)
            except (ValueError, OSError) as error:  # ArtifactError is a ValueError
                logger.warning(
                    "could not reload %s (%s): still serving day %s",
                    self.directory,
                    error,
                    self.service.recommender.day,
                )
                continue
            self.seen = version
            self.service.replace(recommender)
            logger.warning("reloaded %s: serving day %s", self.directory, recommender.day)


def create_app(
    recommender: ServedModel,
    save_to: str | Path | None = None,
    *,
    advance_token: str | None = None,
    docs: bool = False,
    max_body_bytes: int = MAX_BODY_BYTES,
    reload_from: str | Path | None = None,
) -> FastAPI:
    """The FastAPI application. ``save_to``: the artefact folder written by each advance (None: never);
    ``advance_token``: serve ``POST /advance`` to requests carrying ``Authorization: Bearer <token>`` (None: no
    ``/advance`` at all); ``docs``: serve ``/docs`` and ``/openapi.json``; ``max_body_bytes``: the largest body
    read; ``reload_from``: an artefact folder whose new versions are served as they appear
    (:class:`ArtefactWatcher`; not with ``/advance``)."""
    if advance_token is not None and len(advance_token) < MIN_TOKEN:
        raise ValueError(f"the /advance token must be at least {MIN_TOKEN} characters (e.g. openssl rand -hex 32)")
    if reload_from is not None and advance_token is not None:
        raise ValueError("an app that reloads its artefact from disk serves no /advance: the file is the truth")
    service = Service(recommender, save_to)
    batcher = Batcher(service)
    urls = {} if docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    lifespan = None if reload_from is None else watching(ArtefactWatcher(service, reload_from))
    app = FastAPI(title="recbole-tasrec", version=package_version(), lifespan=lifespan, **urls)
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.state.service = service

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return invalid_response(error)

    @app.exception_handler(StarletteHTTPException)
    async def unreadable(request: Request, error: StarletteHTTPException) -> JSONResponse:
        # FastAPI answers 400 to a body it cannot decode (not UTF-8, nested too deep): a malformed body, 422
        if error.status_code != 400:
            return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)
        return JSONResponse({"detail": f"malformed JSON body: {error.detail}"}, status_code=422)

    # JSONResponse directly: the payloads are plain JSON already, so FastAPI's re-validation is skipped
    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse(service.health())

    # the body is read and validated by pydantic-core in one call (model_validate_json), not through FastAPI's
    # json.loads + dependency pass, and answered with orjson when installed: the per-request cost at 1,000/s
    @app.post("/recommend", openapi_extra=body_schema(RecommendRequest))
    async def recommend(request: Request) -> Response:
        try:
            parsed = RecommendRequest.model_validate_json(await request.body())
        except ValidationError as error:
            return invalid_response(error)
        n_items = len(service.ranker.tokens) - 1
        if parsed.k > n_items:  # checked before batching: a hostile k never reaches another request's batch
            raise HTTPException(422, f"k={parsed.k} is more than the {n_items} items of the model")
        return FastJSON(await batcher.submit(parsed))

    if advance_token is None:  # changing the served model is off unless the operator enables it
        return app
    expected = f"Bearer {advance_token}".encode()

    @app.post("/advance")
    async def advance(request: AdvanceRequest, authorization: Annotated[str, Header()] = "") -> JSONResponse:
        if not hmac.compare_digest(authorization.encode(), expected):
            raise HTTPException(401, "POST /advance needs the header 'Authorization: Bearer <token>'")
        return JSONResponse(await run_in_threadpool(service.advance, request))

    return app


def watching(watcher: ArtefactWatcher) -> Any:
    """A lifespan running ``watcher`` while the app serves (in each worker process: started after the fork)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        task = asyncio.create_task(watcher.run())
        try:
            yield
        finally:
            task.cancel()

    return lifespan


def serve(app: FastAPI, host: str, port: int, workers: int = 1, access_log: bool = False) -> None:
    """Run ``app`` with uvicorn on ``host:port`` until stopped (SIGINT, SIGTERM).

    With ``workers > 1`` the model is loaded (and its per-day item table computed, by one request) once, then
    ``workers`` processes are forked, each scoring on its own core; the model's tensors and arrays stay shared,
    copy-on-write pages never written. Each worker listens on its own socket bound to the same port
    (``SO_REUSEPORT``, :func:`worker_sockets`), so the kernel spreads new connections evenly over them; with one
    socket shared by all, whichever worker woke first accepted them all (one of two workers took all 32
    connections of the benchmark). A worker that dies stops the service (its exit status says so), rather than
    serving on at a fraction of the capacity. ``/advance`` would change one process's model: the CLI refuses it
    with several workers, whose apps reload the artefact when the ``advance`` command has replaced it
    (``reload_from``)."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, access_log=access_log, log_level="warning")
    # the loaded model's objects leave the collector's view: a full collection never walks them again (pauses
    # seen in the latency tail), nor writes to their pages, which forked workers keep sharing
    gc.collect()
    gc.freeze()
    if workers == 1:
        uvicorn.Server(config).run()
        return
    service: Service = app.state.service
    if len(service.ranker.tokens) > 1:  # the tables scoring builds once, before the fork: shared, not rebuilt
        service.ranker.rank([[service.ranker.tokens[1]]], 1)
    sockets = worker_sockets(config, workers)
    children = []
    for listening in sockets:
        child = os.fork()
        if child == 0:  # a worker: serve until told to stop, never return into the caller's code
            status = 1
            try:
                uvicorn.Server(config).run(sockets=[listening])
                status = 0
            finally:
                os._exit(status)
        children.append(child)
    for listening in sockets:  # the workers hold their own: the parent accepts nothing
        listening.close()

    def stop(signum: int, frame: Any) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failed = None
    while children:
        child, status = os.wait()
        children.remove(child)
        if status and failed is None:
            failed = f"a worker (pid {child}) exited with status {os.waitstatus_to_exitcode(status)}"
            stop(signal.SIGTERM, None)
    if failed:
        raise RuntimeError(f"{failed}: the service stopped")


def worker_sockets(config: Any, workers: int) -> list[socket.socket]:
    """``workers`` listening sockets on ``config``'s host and port, bound with ``SO_REUSEPORT`` where the system
    has it (the kernel then balances new connections over them: only processes of this user can join the
    group); elsewhere one socket shared by all. Port 0 picks one free port for all of them."""
    if not hasattr(socket, "SO_REUSEPORT"):
        return [config.bind_socket()] * workers
    first = _reuseport_socket(config.host, config.port)
    port = first.getsockname()[1]
    return [first, *(_reuseport_socket(config.host, port) for _ in range(workers - 1))]


def _reuseport_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` that joins the port's ``SO_REUSEPORT`` group; the address family
    chosen as uvicorn chooses it (IPv6 for a host with a colon)."""
    listening = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listening.bind((host, port))
        listening.listen(2048)
    except OSError as error:
        listening.close()
        reason = f"cannot listen on {host}:{port}: {error.strerror} (choose another --port?)"
        raise OSError(error.errno, reason) from None
    listening.set_inheritable(True)
    return listening
