"""Every error leaves the server in OpenAI's shape: {"error": {"message", "type", "param", "code"}}, except
on the Langchain-Chatchat 0.2 paths, where it is Chatchat's {"code", "msg", "data"} (its clients compare
`code` and `msg`).

/v1 clients (the openai package, LangChain) parse OpenAI's shape; /api uses the same so the UI and the CLI
handle one format. The one table below maps an error's kind (zhiku.errors) to its HTTP status and OpenAI
type; the middlewares (auth, limits), the exception handlers and the streaming routes all answer through
`error_response` / `error_body`, which pick the envelope by the request's path, so an error kind gets the
same status and code on every route, and every route its own clients' envelope.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zhiku.errors import ErrorKind, ZhikuError, as_error
from zhiku.server.paths import is_chatchat

# kind -> (HTTP status, OpenAI error type)
HTTP: dict[ErrorKind, tuple[int, str]] = {
    "invalid_request": (400, "invalid_request_error"),
    "unauthorized": (401, "invalid_request_error"),  # what OpenAI answers for a missing or wrong key
    "forbidden": (403, "permission_error"),
    "not_found": (404, "not_found_error"),
    "conflict": (409, "conflict_error"),
    "too_large": (413, "invalid_request_error"),
    "cancelled": (499, "invalid_request_error"),  # the client left; nobody reads the answer
    "internal": (500, "server_error"),
    "unavailable": (502, "server_error"),  # a search engine or an upstream failed
    "busy": (503, "server_error"),
    "storage_full": (507, "server_error"),
}


def status_of(err: ZhikuError) -> int:
    return HTTP[err.kind][0]


def error_body(err: ZhikuError, path: str = "", status: int | None = None) -> dict[str, Any]:
    """The error as the client of `path` reads it (the one place that decides by path)."""
    if is_chatchat(path):
        return {"code": status or status_of(err), "msg": err.message, "data": None}
    return {"error": {"message": err.message, "type": HTTP[err.kind][1], "param": err.param, "code": err.code}}


def error_response(err: ZhikuError, status: int | None = None, headers: dict[str, str] | None = None,
                   path: str = "") -> JSONResponse:
    """The JSON reply for an error on `path`; `status` overrides the table only for Starlette's own errors."""
    headers = dict(headers or {})
    if err.retry_after is not None:
        headers["Retry-After"] = str(err.retry_after)
    return JSONResponse(error_body(err, path, status), status_code=status or status_of(err),
                        headers=headers or None)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return f"the request body is not valid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}", None
    if first.get("type") == "missing" and not loc:
        return "the request body is missing", None
    param = ".".join(loc) or None
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    msg = str(first.get("msg", "invalid value"))
    if "Expected UploadFile" in msg:  # a multipart part without filename=: FastAPI's words name a class
        msg = ("not a file: the part has no filename= parameter (RFC 7578 does not allow filename*= in "
               'multipart/form-data; send filename="..." with the name in UTF-8)')
    return f"{param + ': ' if param else ''}{msg}{more}", param


_KIND_OF_STATUS: dict[int, ErrorKind] = {status: kind for kind, (status, _) in reversed(HTTP.items())}
# Starlette's own errors (no route, wrong method, a body it cannot parse) get codes as stable as ours.
_CODE_OF_STATUS = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 413: "request_too_large",
                   415: "unsupported_media_type"}


def install(app: FastAPI) -> None:
    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(as_error(exc), path=request.scope["path"])

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, param = _validation_message(exc)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        whole_body = any(tuple(e.get("loc", ())) == ("body",) for e in exc.errors())
        if whole_body and ctype and "json" not in ctype and "form" not in ctype:  # FastAPI did not parse it
            message = (f"the request body must be JSON sent with Content-Type: application/json "
                       f"(this request says {ctype})")
        return error_response(ZhikuError(message, kind="invalid_request", code="invalid_request", param=param),
                              path=request.scope["path"])

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        elif detail == "There was an error parsing the body":  # FastAPI's words for a broken form body
            detail = f"the request body could not be parsed{f': {exc.__cause__}' if exc.__cause__ else ''}"
            if "multipart" in request.headers.get("content-type", ""):
                detail = ("the multipart/form-data body could not be parsed (a missing or wrong boundary, or a part "
                          f"cut short){f': {exc.__cause__}' if exc.__cause__ else ''}")
        kind = _KIND_OF_STATUS.get(exc.status_code, "internal" if exc.status_code >= 500 else "invalid_request")
        code = _CODE_OF_STATUS.get(exc.status_code, "internal_error" if kind == "internal" else kind)
        return error_response(ZhikuError(detail, kind=kind, code=code), exc.status_code, dict(exc.headers or {}),
                              request.scope["path"])

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(ZhikuError, on_error)
    app.add_exception_handler(Exception, on_error)
    app.add_middleware(AnswerInPlace)


class AnswerInPlace:
    """Unexpected exceptions answered here (as_error logs them): Starlette's handler for Exception runs in
    its outermost middleware, which re-raises after replying, and uvicorn then drops the keep-alive
    connection, so the client's next request on it would be reset."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as e:
            if started:  # too late for a status: let the server end the response
                raise
            await error_response(as_error(e), path=scope.get("path", ""))(scope, receive, send)
