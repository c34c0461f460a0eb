"""Every error leaves the server in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.

/v1 clients (the openai package, LangChain) parse that shape; /api uses the same so the UI and the CLI
handle one format. Typed errors from the services map to their status here, so routes stay thin.
Body-size and message-count limits (413, 400) are enforced earlier, by server/limits.py.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from zhiku.kb.types import DocumentNotFound, KBError, KBExists, KBNotFound
from zhiku.llm.base import (
    ContextOverflowError,
    InvalidParamsError,
    ModelError,
    QueueFullError,
    UnknownModelError,
)

log = logging.getLogger("zhiku.server")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 409: "conflict_error",
          413: "invalid_request_error", 429: "rate_limit_error", 503: "server_error"}


class APIError(Exception):
    """Raised by routes for a request they refuse; rendered in OpenAI's error shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.headers = headers


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(e: APIError) -> JSONResponse:
    return JSONResponse(error_body(e.message, e.type, e.param, e.code), status_code=e.status, headers=e.headers)


def api_error_for(exc: Exception) -> APIError:
    """The API error a service-layer exception stands for (also used mid-stream, as an SSE event)."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, QueueFullError):
        return APIError(503, str(exc), code="server_busy", headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, UnknownModelError):
        return APIError(404, str(exc), param="model", code="model_not_found")
    if isinstance(exc, ContextOverflowError):
        return APIError(400, str(exc), param="messages", code="context_length_exceeded")
    if isinstance(exc, InvalidParamsError):
        return APIError(400, str(exc), param=exc.param)
    if isinstance(exc, ModelError):
        return APIError(500, str(exc), code="model_error", type="server_error")
    if isinstance(exc, KBError):
        if isinstance(exc, KBNotFound | DocumentNotFound):
            return APIError(404, str(exc), code="not_found")
        if isinstance(exc, KBExists):
            return APIError(409, str(exc), code="already_exists")
        return APIError(400, str(exc), code=type(exc).__name__)
    log.exception("unexpected error", exc_info=exc)
    return APIError(500, "internal server error; see the server log", type="server_error")


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
    return f"{param + ': ' if param else ''}{first.get('msg', 'invalid value')}{more}", param


def install(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(api_error_for(exc))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, param = _validation_message(exc)
        return error_response(APIError(400, message, param=param))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}"
        return error_response(APIError(exc.status_code, detail, headers=dict(exc.headers or {})))

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    for exc_type in (APIError, QueueFullError, ModelError, ContextOverflowError, InvalidParamsError, KBError,
                     Exception):
        app.add_exception_handler(exc_type, on_api_error)
