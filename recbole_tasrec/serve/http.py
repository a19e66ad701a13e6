"""The HTTP service: ``POST /recommend``, ``POST /advance``, ``GET /health`` on FastAPI (the ``serve`` extra).

``POST /recommend`` scores on the event loop (a request takes about a millisecond: handing it to a thread
costs more than it saves). ``POST /advance`` folds a finished day in on a worker thread: the next graph is
built aside and swapped in by one assignment (:meth:`SessionRecommender.advance_day`), so every request is
answered from the old graph or the new one, never a half-updated one; one advance runs at a time. After each
advance the artefact is saved atomically (unless the service was started without a folder to save to), so a
restart continues from the last finished day.

Bad requests get HTTP 422 with the reason: malformed JSON, an empty session, ``k`` below 1, too many sessions
or clicks, an item id longer than :data:`MAX_ITEM_ID`. Unknown item ids are skipped and reported.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from recbole_tasrec.serve.artifact import package_version
from recbole_tasrec.serve.ranking import CHUNK, Ranker
from recbole_tasrec.serve.recommender import SessionRecommender

MAX_ITEM_ID = 1000  # characters in one item id
MAX_SESSION = 10_000  # clicks in one session (only the last MAX_ITEM_LIST_LENGTH known ones are used)
MAX_SESSIONS = CHUNK  # sessions in one /recommend request: one scoring call, so one graph answers them all
MAX_DAY_CLICKS = 10_000_000  # clicks in one /advance request

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


class Service:
    """The recommender, the artefact folder it saves to, and the lock that keeps advances one at a time."""

    def __init__(self, recommender: SessionRecommender, save_to: str | Path | None = None) -> None:
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

    def recommend(self, request: RecommendRequest) -> dict[str, object]:
        sessions = [[str(item) for item in session] for session in request.sessions]
        ranked = self.ranker.rank(sessions, request.k, request.exclude_seen)
        results = [
            {"items": items, "scores": scores, "unknown_items": unknown}
            for items, scores, unknown in zip(ranked.items, ranked.scores, ranked.unknown, strict=True)
        ]
        return {"day": self.recommender.day, "results": results}

    def advance(self, request: AdvanceRequest) -> dict[str, object]:
        sessions = [[str(item) for item in session] for session in request.sessions]
        clicks = sum(len(session) for session in sessions)
        if clicks > MAX_DAY_CLICKS:
            raise HTTPException(422, f"a day of {clicks} clicks is over the limit of {MAX_DAY_CLICKS}: split it")
        ids, _, flat = self.ranker.encode(sessions)
        with self._advance_lock:
            transitions = self.recommender.advance_day(sessions)
            saved = self.recommender.save(self.save_to) if self.save_to is not None else None
            day = self.recommender.day
        return {
            "day": day,
            "sessions": len(sessions),
            "clicks": clicks,
            "transitions": transitions,
            "unknown_items": int(len(set(flat[ids == 0].tolist()))),
            "saved": None if saved is None else str(saved),
        }


def create_app(recommender: SessionRecommender, save_to: str | Path | None = None) -> FastAPI:
    """The FastAPI application; ``save_to``: the artefact folder written after each advance (None: never)."""
    service = Service(recommender, save_to)
    app = FastAPI(title="recbole-tasrec", version=package_version())
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
        return JSONResponse(service.recommend(request))

    @app.post("/advance")
    async def advance(request: AdvanceRequest) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(service.advance, request))

    return app
