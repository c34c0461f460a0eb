"""One hierarchy for every error a user may see: a message meant for them, a stable `code` and a `kind`.

Each layer raises its own subclass (KBNotFound, QueueFullError, ChatError, ...) and never picks an HTTP
status: the kind says what went wrong in terms every interface understands, and the server maps kinds to
statuses in one table (server/errors.py). The code is a stable machine name that clients may branch on; it
is the same on /v1, /api and in chat `error` events. The CLI and the web UI show the message as is.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from typing import Any, Literal, get_args

ErrorKind = Literal["invalid_request", "unauthorized", "forbidden", "not_found", "conflict", "too_large",
                    "cancelled", "internal", "unavailable", "busy", "storage_full"]
KINDS: tuple[str, ...] = get_args(ErrorKind)

log = logging.getLogger("zhiku")


class ZhikuError(Exception):
    """Base of every error a user may see. Subclasses set `kind` and `code`; an instance may override both."""

    kind: ErrorKind = "internal"
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, kind: ErrorKind | None = None,
                 param: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if kind is not None:
            self.kind = kind
        self.param = param  # the request field at fault, when one is
        self.retry_after = retry_after  # seconds, for "busy"

    def to_dict(self) -> dict[str, Any]:
        """The error as plain data (a chat `error` event's fields)."""
        d: dict[str, Any] = {"message": self.message, "kind": self.kind, "code": self.code}
        if self.param is not None:
            d["param"] = self.param
        if self.retry_after is not None:
            d["retry_after"] = self.retry_after
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ZhikuError:
        """Rebuild an error from `to_dict` (e.g. an event read back from the wire); unknown kinds are internal."""
        kind = d.get("kind")
        return cls(str(d.get("message") or "error"), code=str(d.get("code") or "internal_error"),
                   kind=kind if kind in KINDS else "internal",
                   param=d.get("param"), retry_after=d.get("retry_after"))


class InvalidRequest(ZhikuError):
    kind: ErrorKind = "invalid_request"
    code = "invalid_request"


class NotFound(ZhikuError):
    kind: ErrorKind = "not_found"
    code = "not_found"


class Busy(ZhikuError):
    kind: ErrorKind = "busy"
    code = "server_busy"


class ModelError(ZhikuError):
    """A model (LLM weights, pack or embedder) could not be loaded or run; the message says how to fix it."""

    code = "model_error"


class Unavailable(ZhikuError):
    """A service outside this process (a search engine, an upstream LLM) failed or cannot be reached."""

    kind: ErrorKind = "unavailable"
    code = "unavailable"


def disk_full(exc: BaseException) -> bool:
    """True when `exc` means the disk or quota is full: SQLite's SQLITE_FULL or an OSError ENOSPC/EDQUOT."""
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full_reason(exc: BaseException) -> str:
    """What the system said about a full disk, without the file name (a server path is not the client's)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def as_error(exc: BaseException) -> ZhikuError:
    """The user-facing error for any exception: itself if it is one, else an internal error (logged with
    its traceback) that names the exception, so a bug report can say what failed."""
    if isinstance(exc, ZhikuError):
        return exc
    if disk_full(exc):  # any write (a conversation, a new knowledge base) on a full disk
        log.warning("disk full: %s", exc)  # the path is for the server's log, not for the client
        return ZhikuError(f"disk full: no space left to store this ({disk_full_reason(exc)})",
                          kind="storage_full", code="insufficient_storage")
    log.error("unexpected error", exc_info=exc)
    return ZhikuError(f"internal error: {type(exc).__name__}: {exc}"[:500] + "; see the server log")
