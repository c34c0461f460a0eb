"""Stop work nobody will read: a route awaits its answer through `unless_client_leaves`, which cancels it
the moment the client closes the connection.

A streamed response notices a departed client when it next writes; a one-JSON answer writes nothing until
the end, so without this a dropped request would keep its generation slot until `max_tokens`. Cancelling
the awaiting task closes the LLM's delta generator, which sets the flag the worker checks between tokens
(llm/scheduler.py): the slot is freed within a token and counted in `requests_cancelled_total`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

from zhiku.errors import ZhikuError

T = TypeVar("T")


class ClientClosed(ZhikuError):
    def __init__(self) -> None:
        super().__init__("the client closed the request", kind="cancelled", code="client_closed_request")


async def _disconnected(request: Request) -> None:
    """Returns when the server reports the client gone. Only for a request whose body has been read: the
    messages that remain are the disconnect (the server repeats it to every caller, so polling
    `request.is_disconnected()` elsewhere sees it too)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """`await work`, unless the client disconnects first: then `work` is cancelled and ClientClosed raised
    (a 499 nobody reads). Call it once the request body has been read (FastAPI has parsed it)."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise ClientClosed()
    finally:
        for t in (task, gone):
            t.cancel()
        await asyncio.gather(task, gone, return_exceptions=True)
