"""Chatchat 0.2's wire conventions in one place: the {code, msg, data} envelope, its stream framing, and how
its scores map to zhiku's.

Scores. Chatchat's `score_threshold` and `search_docs` scores are distances (FAISS L2 over normalised
vectors: smaller is closer, and a threshold of 1 or more keeps everything). zhiku scores are relevances in
[0, 1], higher is better. The one rule: distance = 1 - relevance, so a Chatchat threshold t keeps the hits
whose relevance is at least 1 - t (t >= 1 keeps all, t = 0 only perfect matches).

Streams. Chatchat's routes answer `text/event-stream` whose pieces are bare `json.dumps(...)` strings, no
`data:` prefix, no delimiter: its ApiRequest runs json.loads on every piece httpx hands it. So each object
goes out as one write (one HTTP chunk, flushed at once), never two objects in one write nor one split in two.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Iterable, Iterator
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from zhiku.errors import as_error
from zhiku.server.errors import status_of

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def relevance_threshold(distance: float) -> float:
    """zhiku's relevance threshold for a Chatchat distance threshold."""
    return min(1.0, max(0.0, 1.0 - distance))


def distance(relevance: float) -> float:
    """Chatchat's distance for a zhiku relevance."""
    return round(1.0 - min(1.0, max(0.0, relevance)), 6)


def body(code: int = 200, msg: str = "success", data: Any = None) -> dict[str, Any]:
    return {"code": code, "msg": msg, "data": data}


def envelope(code: int = 200, msg: str = "success", data: Any = None, status: int = 200) -> JSONResponse:
    """Chatchat's BaseResponse / ListResponse. Like Chatchat, refusals are HTTP 200 with the code inside."""
    return JSONResponse(body(code, msg, data), status_code=status)


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def json_stream(objects: AsyncIterable[dict[str, Any]] | Iterable[dict[str, Any]]) -> StreamingResponse:
    """One JSON object per write. A sync iterable is run on a worker thread, one object at a time."""
    if isinstance(objects, AsyncIterable):
        async def pieces() -> AsyncIterator[str]:
            async for obj in objects:
                yield _dump(obj)

        return StreamingResponse(pieces(), media_type="text/event-stream", headers=STREAM_HEADERS)

    def sync_pieces() -> Iterator[str]:
        for obj in objects:
            yield _dump(obj)

    return StreamingResponse(sync_pieces(), media_type="text/event-stream", headers=STREAM_HEADERS)


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        if err.get("type") == "json_invalid":
            problems.append("the request body is not valid JSON")
        elif err.get("type") == "missing" and not where:
            problems.append("the request body is missing")
        else:
            problems.append(f"{where + ': ' if where else ''}{err.get('msg', 'invalid value')}")
    more = len(exc.errors()) - len(problems)
    return "; ".join(problems) + (f" (and {more} more problems)" if more > 0 else "") if problems \
        else "invalid request"


class ChatchatRoute(APIRoute):
    """Answers a bad body, and any error a service raises, in Chatchat's envelope instead of zhiku's
    OpenAI-shaped error: a Chatchat client reads `code` and `msg`. Status and message come from zhiku's
    one error mapping (server/errors.py); an invalid body is a 400, as everywhere in zhiku."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as e:
                return envelope(400, _validation_message(e), status=400)
            except StarletteHTTPException as e:  # e.g. FastAPI's "error parsing the body"
                return envelope(e.status_code, str(e.detail), status=e.status_code)
            except Exception as e:  # noqa: BLE001 - every error leaves in the envelope
                err = as_error(e)
                retry = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else None
                return JSONResponse(body(status_of(err), err.message), status_code=status_of(err), headers=retry)

        return route
