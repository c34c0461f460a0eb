"""Which part of the server a request path belongs to, judged on the normalised path (`//v1/./x`, `/API`)
as a browser or a proxy may send it: API keys, the web UI's mount and the error envelope all ask here."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

from fastapi import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from zhiku.server.chatchat import PREFIXES as CHATCHAT_PREFIXES


def under(path: str, prefixes: Iterable[str]) -> bool:
    """True when the path is one of `prefixes` or below one."""
    norm = posixpath.normpath("/" + path.lstrip("/")).lower()
    return any(norm == p or norm.startswith(p + "/") for p in prefixes)


def is_chatchat(path: str) -> bool:
    """A path of the Langchain-Chatchat 0.2 API, whose clients read errors as {"code", "msg"}."""
    return under(path, CHATCHAT_PREFIXES)


class ServerPathsFirst:
    """Wraps an app mounted at "/" (the web UI): requests for server paths get the server's 404 handler.

    Paths that belong to the server, not the UI, must get the server's own 404 (OpenAI's error shape for
    /v1), not Gradio's page, even though Gradio is mounted at "/". create_app reads them from its routes
    (server/app.py server_prefixes), so a new router needs no list kept in step by hand."""

    def __init__(self, app: ASGIApp, prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and under(scope.get("path", ""), self.prefixes):
            raise HTTPException(404, "Not Found")  # handled by the parent app's exception handlers
        await self.app(scope, receive, send)
