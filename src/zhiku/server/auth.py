"""API keys: when configured, every /v1, /api and /metrics request needs `Authorization: Bearer <key>`.

Keys come from `settings.api_key` and/or `settings.api_keys_file` (one key per line, `#` comments). The
file is re-read when it changes, so a key can be added or revoked without a restart. Auth is on as soon as
either setting is given: an empty or unreadable keys file locks everyone out rather than opening the
server (fail closed). `/health` stays open so load balancers and `zhiku` itself can probe it.

This is a pure ASGI middleware (no request body is read before the key is checked) and compares SHA-256
digests with `hmac.compare_digest` against every key, so timing reveals neither a key nor its length.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from zhiku.config import Settings
from zhiku.errors import ZhikuError
from zhiku.server.chatchat import PREFIXES as CHATCHAT_PREFIXES
from zhiku.server.errors import error_response
from zhiku.server.paths import under

log = logging.getLogger(__name__)

# Normalised path prefixes that need a key; everything else (the UI, /health, /docs) is open.
PROTECTED_PREFIXES = ("/v1", "/api", "/metrics", *CHATCHAT_PREFIXES)


class AuthConfigError(ValueError):
    """The key settings cannot be used (e.g. the keys file does not exist)."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def parse_keys(text: str) -> list[str]:
    """Keys from a keys file: one per line, blank lines and `#` comments ignored."""
    keys = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keys.append(line)
    return keys


class KeyRing:
    """The accepted keys, as digests; reloads the keys file when its mtime or size changes."""

    def __init__(self, api_key: str = "", keys_file: Path | None = None) -> None:
        self._static = [_digest(api_key)] if api_key else []
        self._file = keys_file.expanduser() if keys_file else None
        self._stamp: tuple[int, int] | None = None
        self._from_file: list[bytes] = []
        self._lock = threading.Lock()
        if self._file is not None:
            if not self._file.is_file():
                raise AuthConfigError(f"api_keys_file {self._file} does not exist")
            self._reload()

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        return cls(settings.api_key, settings.api_keys_file)

    @property
    def enabled(self) -> bool:
        return bool(self._static) or self._file is not None

    def _reload(self) -> None:
        assert self._file is not None
        try:
            st = self._file.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp == self._stamp:
                return
            keys = parse_keys(self._file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            # Fail closed: a keys file we cannot read admits nobody from it.
            log.error("cannot read api_keys_file %s: %s", self._file, e)
            self._from_file, self._stamp = [], None
            return
        if not keys:
            log.warning("api_keys_file %s holds no keys: /v1 and /api refuse every request", self._file)
        self._from_file, self._stamp = [_digest(k) for k in keys], stamp

    def check(self, presented: str) -> bool:
        if self._file is not None:
            with self._lock:
                self._reload()
        candidate = _digest(presented)
        ok = False
        for known in self._static + self._from_file:  # no early exit: time does not depend on which key
            ok |= hmac.compare_digest(candidate, known)
        return ok


def needs_key(path: str) -> bool:
    return under(path, PROTECTED_PREFIXES)


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


class APIKeyMiddleware:
    """Refuse protected requests without a valid key with 401 in the error envelope of the path's clients."""

    def __init__(self, app: ASGIApp, keys: KeyRing) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not needs_key(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope.get("headers", []))
        if token is not None and self.keys.check(token):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if token is None:
            message = ("Missing API key: send the header 'Authorization: Bearer <key>' "
                       "(the key set with ZHIKU_API_KEY or the keys file).")
            code = "missing_api_key"
        else:
            message = "Incorrect API key provided."
            code = "invalid_api_key"
        response = error_response(ZhikuError(message, kind="unauthorized", code=code),
                                  headers={"WWW-Authenticate": 'Bearer realm="zhiku"'}, path=scope.get("path", ""))
        await response(scope, receive, send)
