"""Request limits, enforced as ASGI middleware so every route (present and future) gets them for free.

- body size: `max_body_mb` for ordinary requests, `max_request_upload_mb` for multipart uploads. Checked
  against Content-Length up front and against the bytes actually received (chunked bodies, lying headers).
- uploads: a streaming multipart watcher counts files (`max_files_per_request`) and each file's bytes
  (`max_upload_mb`) while the body arrives, so an oversized upload is refused before it is spooled to disk.
- JSON bodies: a top-level `messages` or `history` array longer than `max_messages`, or a `max_tokens` /
  `max_completion_tokens` above `max_tokens_cap`, gets 400 (the LLM layer also clamps, as a backstop).

Refusals are answered here, in the OpenAI error shape, the moment a limit is crossed; whatever the app
would send afterwards is dropped. A prompt longer than the context window is the LLM layer's to refuse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zhiku.config import Settings
from zhiku.errors import ZhikuError
from zhiku.server.errors import error_response

MB = 1024 * 1024
_JSON_METHODS = {"POST", "PUT", "PATCH"}
# Top-level JSON arrays of chat turns: OpenAI's `messages` (/v1) and the app's `history` (/api/chat).
MESSAGE_KEYS = ("messages", "history")
# Generation budgets: refused above the cap with a 400 (as OpenAI does) rather than silently clamped.
TOKEN_KEYS = ("max_tokens", "max_completion_tokens")


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    max_file_bytes: int
    max_upload_bytes: int
    max_files: int
    max_messages: int
    max_tokens: int

    @classmethod
    def from_settings(cls, s: Settings) -> Limits:
        return cls(max_body_bytes=int(s.max_body_mb * MB), max_file_bytes=int(s.max_upload_mb * MB),
                   max_upload_bytes=int(s.max_request_upload_mb * MB), max_files=s.max_files_per_request,
                   max_messages=s.max_messages, max_tokens=s.max_tokens_cap)


class Rejected(ZhikuError):
    """A limit was crossed: `too_large` (413) or `invalid_request` (400)."""


def _mb(n: int) -> str:
    return f"{n / MB:g} MB" if n >= MB else f"{n / 1024:g} KB"


class _MultipartWatch:
    """Feeds the body through python-multipart's streaming parser only to count files and file bytes."""

    def __init__(self, boundary: bytes, limits: Limits) -> None:
        self.limits = limits
        self.files = 0
        self._size = 0
        self._is_file = False
        self._filename = ""
        self._field = b""
        self._value = b""
        self._headers: dict[bytes, bytes] = {}
        self._broken = False
        callbacks: Any = {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
        }
        self._parser = MultipartParser(boundary, callbacks)

    def feed(self, chunk: bytes) -> None:
        if self._broken or not chunk:
            return
        try:
            self._parser.write(chunk)
        except Rejected:
            raise
        except Exception:
            # Malformed multipart: stop watching and let the app's own parser report it.
            self._broken = True

    def _part_begin(self) -> None:
        self._size, self._is_file, self._filename, self._headers = 0, False, "", {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"filename" in options:
            self._is_file = True
            self._filename = options[b"filename"].decode("utf-8", "replace")
            self.files += 1
            if self.files > self.limits.max_files:
                raise Rejected(f"too many files in one request: the limit is {self.limits.max_files} "
                               "(setting max_files_per_request)", kind="too_large", code="too_many_files",
                               param="files")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._is_file and self._size > self.limits.max_file_bytes:
            raise Rejected(f"file {self._filename!r} is larger than {_mb(self.limits.max_file_bytes)} "
                           "(setting max_upload_mb)", kind="too_large", code="file_too_large", param="files")


def _content_length(headers: dict[bytes, bytes]) -> int | None:
    try:
        return int(headers[b"content-length"])
    except (KeyError, ValueError):
        return None


def json_problem(body: bytes, limits: Limits) -> Rejected | None:
    """The refusal for a JSON body with too many turns or too large a max_tokens, else None."""
    try:
        data = json.loads(body)
    except ValueError:
        return None  # not JSON: the route's validation answers
    if not isinstance(data, dict):
        return None
    for key in MESSAGE_KEYS:
        messages = data.get(key)
        if isinstance(messages, list) and len(messages) > limits.max_messages:
            return Rejected(f"too many {key}: {len(messages)} given, the limit is {limits.max_messages} "
                            "(setting max_messages)", kind="invalid_request", code="array_above_max_length",
                            param=key)
    for key in TOKEN_KEYS:
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > limits.max_tokens:
            return Rejected(f"{key} is too large: {value} asked, this server allows at most "
                            f"{limits.max_tokens} (setting max_tokens_cap)", kind="invalid_request",
                            code="integer_above_max_value", param=key)
    return None


class LimitsMiddleware:
    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        ctype, options = parse_options_header(headers.get(b"content-type", b""))
        multipart = ctype == b"multipart/form-data"
        limit = self.limits.max_upload_bytes if multipart else self.limits.max_body_bytes
        setting = "max_request_upload_mb" if multipart else "max_body_mb"
        too_large = Rejected(f"request body is larger than {_mb(limit)} (setting {setting})", kind="too_large",
                             code="request_too_large")

        state = {"started": False, "refused": False}

        async def guarded_send(message: Message) -> None:
            if state["refused"]:
                return  # we already answered; drop whatever the app says after its body vanished
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        async def refuse(r: Rejected) -> None:
            if state["started"] or state["refused"]:
                return
            state["refused"] = True
            await error_response(r)(scope, receive, send)

        length = _content_length(headers)
        if length is not None and length > limit:
            await refuse(too_large)
            return

        watch = _MultipartWatch(options[b"boundary"], self.limits) if multipart and b"boundary" in options \
            else None
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                try:
                    if received > limit:
                        raise too_large
                    if watch is not None:
                        watch.feed(chunk)
                except Rejected as r:
                    # Answer now: the app may turn the exception into some other error on its way out.
                    await refuse(r)
                    raise
            return message

        app_receive: Receive = counted_receive
        try:
            method = scope.get("method", "GET")
            # Whatever FastAPI would parse as JSON: no content type, application/json or */*+json.
            if method in _JSON_METHODS and (ctype in (b"", b"application/json") or ctype.endswith(b"+json")):
                body = await self._read_all(counted_receive)
                problem = json_problem(body, self.limits)
                if problem is not None:
                    await refuse(problem)
                    return
                app_receive = _replay(body, receive)
        except Rejected as r:
            await refuse(r)
            return

        try:
            await self.app(scope, app_receive, guarded_send)
        except Rejected as r:
            if state["started"]:
                raise
            await refuse(r)
        except Exception:
            if not state["refused"]:
                raise
            # The app failed only because we cut its body off; the client already has our answer.

    @staticmethod
    async def _read_all(receive: Receive) -> bytes:
        parts = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that yields the buffered body once, then defers to the server (for disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
