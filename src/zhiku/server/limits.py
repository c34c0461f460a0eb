"""Request limits, enforced as ASGI middleware so every route (present and future) gets them for free.

- body size: `max_body_mb` for ordinary requests, `max_request_upload_mb` for multipart uploads. Checked
  against Content-Length up front and against the bytes actually received (chunked bodies, lying headers).
- uploads: a streaming multipart watcher counts files (`max_files_per_request`) and each file's bytes
  (`max_upload_mb`) while the body arrives, so an oversized upload is refused before it is spooled to disk.
- file names: a multipart file name that is not UTF-8 gets 400 (Starlette would decode it as Latin-1).
- JSON bodies: a top-level `messages` or `history` array longer than `max_messages`, or a `max_tokens` /
  `max_completion_tokens` above `max_tokens_cap`, gets 400 (the LLM layer also clamps, as a backstop); so
  does a string holding a lone UTF-16 surrogate (`"\ud800"`), which no tokenizer, database or file can take,
  a body that is not UTF-8, and one nested too deeply for the JSON parser.

Refusals are answered here, in the error envelope of the path's clients (server/errors.py), the moment a limit is crossed; whatever the app
would send afterwards is dropped. A prompt longer than the context window is the LLM layer's to refuse.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import UploadFile
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zhiku.errors import InvalidRequest, ZhikuError
from zhiku.limits import LimitExceeded, Limits
from zhiku.server.errors import error_response

_JSON_METHODS = {"POST", "PUT", "PATCH"}
# Top-level JSON arrays of chat turns: OpenAI's `messages` (/v1) and the app's `history` (/api/chat).
MESSAGE_KEYS = ("messages", "history")
# Generation budgets: refused above the cap with a 400 (as OpenAI does) rather than silently clamped.
TOKEN_KEYS = ("max_tokens", "max_completion_tokens")


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
        except (LimitExceeded, InvalidRequest):
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
            raw = options[b"filename"]
            try:  # Starlette would read invalid UTF-8 as Latin-1 and store the file under a garbled name
                self._filename = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InvalidRequest(
                    f"the file name of upload {self.files + 1} is not valid UTF-8 (byte 0x{raw[e.start]:02x} at "
                    f"offset {e.start} of {raw[:80].decode('utf-8', 'replace')!r}): send file names in UTF-8",
                    code="invalid_filename", param="files") from None
            self.files += 1
            self.limits.check_files(self.files)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._is_file:
            self.limits.check_file(self._filename, self._size)


def _content_length(headers: dict[bytes, bytes]) -> int | None:
    try:
        return int(headers[b"content-length"])
    except (KeyError, ValueError):
        return None


def json_problem(body: bytes, limits: Limits) -> ZhikuError | None:
    """The refusal for a JSON body with too many turns, too large a max_tokens, a lone surrogate, bytes that
    are not UTF-8 or a nest too deep to parse, else None."""
    try:
        data = json.loads(body)
    except UnicodeDecodeError as e:
        return InvalidRequest(f"the request body is not valid UTF-8 (byte 0x{body[e.start]:02x} at offset {e.start}): "
                              "send JSON text in UTF-8", code="invalid_unicode")
    except RecursionError:  # Python's parser recurses per level: a deep nest is refused, not a 500
        return InvalidRequest("the request body nests JSON arrays or objects too deeply", code="json_too_deep")
    except ValueError:
        return None  # not JSON: the route's validation answers
    try:
        json.dumps(data, ensure_ascii=False).encode()  # a lone surrogate (keys too) cannot be encoded
    except UnicodeEncodeError as e:
        where = e.object[max(0, e.start - 30):e.start].encode("utf-8", "replace").decode()
        return InvalidRequest(f"the request body holds an unpaired UTF-16 surrogate (\\u{ord(e.object[e.start]):04x}) "
                              f"after {where!r}: it is not valid Unicode text", code="invalid_unicode")
    if not isinstance(data, dict):
        return None
    try:
        for key in MESSAGE_KEYS:
            if isinstance(messages := data.get(key), list):
                limits.check_messages(key, len(messages))
        for key in TOKEN_KEYS:
            if isinstance(value := data.get(key), int) and not isinstance(value, bool):
                limits.check_tokens(key, value)
    except LimitExceeded as e:
        return e
    return None


def read_uploads(files: list[UploadFile], limits: Limits) -> list[tuple[str, bytes]]:
    """The uploaded files of a route, each checked against the per-file limit while it is read (the
    middleware checks the same limits as the bytes arrive; this holds wherever the app is mounted).
    Blocking: an async route runs it in the thread pool."""
    limits.check_files(len(files))
    out = []
    for f in files:
        name = f.filename or "upload"
        data = f.file.read(limits.max_file_bytes + 1)
        limits.check_file(name, len(data))
        out.append((name, data))
    return out


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

        state = {"started": False, "refused": False}

        async def guarded_send(message: Message) -> None:
            if state["refused"]:
                return  # we already answered; drop whatever the app says after its body vanished
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        async def refuse(r: ZhikuError) -> None:
            if state["started"] or state["refused"]:
                return
            state["refused"] = True
            await error_response(r, path=scope.get("path", ""))(scope, receive, send)

        try:
            self.limits.check_body(_content_length(headers) or 0, multipart)
        except LimitExceeded as r:
            await refuse(r)
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
                    self.limits.check_body(received, multipart)
                    if watch is not None:
                        watch.feed(chunk)
                except (LimitExceeded, InvalidRequest) as r:
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
        except LimitExceeded as r:
            await refuse(r)
            return

        try:
            await self.app(scope, app_receive, guarded_send)
        except LimitExceeded as r:
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
