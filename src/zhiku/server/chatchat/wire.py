"""Chatchat 0.2's wire conventions in one place: the {code, msg, data} envelope and its stream framing.
Errors raised on these paths leave in the same envelope: server/errors.py picks it by path, for the routes
as for the middlewares (API key, body and upload limits). What the values mean is service.py's.

Streams. Chatchat's routes answer `text/event-stream` whose pieces are bare `json.dumps(...)` strings, no
`data:` prefix, no delimiter: its ApiRequest runs json.loads on every piece httpx hands it. So each object
goes out as one write (one HTTP chunk, flushed at once), never two objects in one write nor one split in two.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

from fastapi.responses import JSONResponse, StreamingResponse

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


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
