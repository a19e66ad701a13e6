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
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import threading
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from recbole_tasrec.safe_write import WriteError
from recbole_tasrec.serve.artifact import package_version
from recbole_tasrec.serve.day_training import TrainOptions
from recbole_tasrec.serve.ranking import CHUNK, Ranker
from recbole_tasrec.serve.served import DayAlreadyFolded, ServedModel

MAX_ITEM_ID = 1000  # characters in one item id
MAX_SESSION = 10_000  # clicks in one session (only the last MAX_ITEM_LIST_LENGTH known ones are used)
MAX_SESSIONS = CHUNK  # sessions in one /recommend request: one scoring call, so one graph answers them all
MAX_DAY_CLICKS = 10_000_000  # clicks in one /advance request
MIN_TOKEN = 16  # characters of the /advance token
MAX_BODY_BYTES = 32 * 2**20  # default limit of a request body, checked before it is read (--max-body-mb)

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
        ranked = self.ranker.rank(sessions, ks, excluding)
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
    scoring call, one graph, on a worker thread. Requests are answered in arrival order; a failing request
    fails alone.
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
                answers = await run_in_threadpool(self._answer, [request for request, _ in batch])
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


def create_app(
    recommender: ServedModel,
    save_to: str | Path | None = None,
    *,
    advance_token: str | None = None,
    docs: bool = False,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The FastAPI application. ``save_to``: the artefact folder written by each advance (None: never);
    ``advance_token``: serve ``POST /advance`` to requests carrying ``Authorization: Bearer <token>`` (None: no
    ``/advance`` at all); ``docs``: serve ``/docs`` and ``/openapi.json``; ``max_body_bytes``: the largest body read."""
    if advance_token is not None and len(advance_token) < MIN_TOKEN:
        raise ValueError(f"the /advance token must be at least {MIN_TOKEN} characters (e.g. openssl rand -hex 32)")
    service = Service(recommender, save_to)
    batcher = Batcher(service)
    urls = {} if docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="recbole-tasrec", version=package_version(), **urls)
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.state.service = service

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        # the reasons without the input: an echo could be huge, or hold values JSON cannot write (inf)
        reasons = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in error.errors()]
        return JSONResponse({"detail": reasons}, status_code=422)

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

    @app.post("/recommend")
    async def recommend(request: RecommendRequest) -> JSONResponse:
        n_items = len(service.ranker.tokens) - 1
        if request.k > n_items:  # checked before batching: a hostile k never reaches another request's batch
            raise HTTPException(422, f"k={request.k} is more than the {n_items} items of the model")
        return JSONResponse(await batcher.submit(request))

    if advance_token is None:  # changing the served model is off unless the operator enables it
        return app
    expected = f"Bearer {advance_token}".encode()

    @app.post("/advance")
    async def advance(request: AdvanceRequest, authorization: Annotated[str, Header()] = "") -> JSONResponse:
        if not hmac.compare_digest(authorization.encode(), expected):
            raise HTTPException(401, "POST /advance needs the header 'Authorization: Bearer <token>'")
        return JSONResponse(await run_in_threadpool(service.advance, request))

    return app
