"""Safe defaults around the app: closed CORS, a DNS-rebinding guard, the exposure warning, and the order
in which the protective middlewares wrap the app.

Outermost first: CORS (so preflights and error replies carry CORS headers for configured origins) ->
rebinding guard -> API key -> body/upload/message limits -> the app. A request is refused by the cheapest
check that can refuse it, before any body is read.
"""

from __future__ import annotations

import ipaddress

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from zhiku.config import Settings
from zhiku.errors import ZhikuError
from zhiku.server.auth import APIKeyMiddleware, AuthConfigError, KeyRing
from zhiku.server.errors import error_response
from zhiku.server.limits import Limits, LimitsMiddleware


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_header_name(value: str) -> str:
    """The host part of a Host header: `[::1]:8000` -> `::1`, `127.0.0.1:8000` -> `127.0.0.1`."""
    value = value.strip()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def auth_configured(settings: Settings) -> bool:
    return bool(settings.api_key) or settings.api_keys_file is not None


def exposure_warning(settings: Settings) -> str | None:
    """The start-up warning for a server that others can reach without a key, or None when safe."""
    if is_loopback(settings.host) or auth_configured(settings):
        return None
    return (f"zhiku is listening on {settings.host}:{settings.port} WITHOUT an API key: anyone who can reach "
            "this address can read and change your knowledge bases and conversations and use the model. "
            "Set ZHIKU_API_KEY (or ZHIKU_API_KEYS_FILE), or bind to 127.0.0.1.")


class RebindingGuard:
    """Refuse browser requests that reach a loopback-only server under a foreign host name.

    A web page can re-point its own domain at 127.0.0.1 (DNS rebinding) and then talk to a local server as
    if it were same-origin, which CORS does not stop. Such requests come from a browser (they carry
    Origin or Sec-Fetch-Site) with a Host that is not a loopback name. Used only when the server is bound
    to loopback without a key; with a key the attacker's page still lacks the key.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = {k.lower(): v for k, v in scope.get("headers", [])}
            from_browser = b"origin" in headers or b"sec-fetch-site" in headers
            host = host_header_name(headers.get(b"host", b"").decode("latin-1"))
            if from_browser and host and not is_loopback(host):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                response = error_response(ZhikuError(
                    f"host {host!r} is not allowed: this server only answers on localhost; "
                    "set an API key to serve other names", kind="forbidden", code="host_not_allowed"),
                    path=scope.get("path", ""))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install(app: FastAPI, settings: Settings) -> None:
    """Wrap `app` in the protective middlewares (see the module docstring for the order)."""
    keys = KeyRing.from_settings(settings)  # raises AuthConfigError on a missing keys file
    # add_middleware puts each new one outside the previous: add innermost first.
    app.add_middleware(LimitsMiddleware, limits=Limits.from_settings(settings))
    if keys.enabled:
        app.add_middleware(APIKeyMiddleware, keys=keys)
    elif is_loopback(settings.host):
        app.add_middleware(RebindingGuard)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                           allow_headers=["Authorization", "Content-Type"],
                           expose_headers=["Retry-After"], allow_credentials=False, max_age=600)


def print_exposure_warning(settings: Settings) -> None:
    """Print the exposure warning, if any, in a red box on stderr before the server starts."""
    message = exposure_warning(settings)
    if message is None:
        return
    from rich.console import Console
    from rich.panel import Panel

    Console(stderr=True).print(Panel(message, title="WARNING: no API key on a network address",
                                     border_style="bold red", style="bold"))


def startup_checks(settings: Settings) -> None:
    """Before the server starts: warn loudly about exposure, and refuse unusable key settings in one line."""
    print_exposure_warning(settings)
    try:
        KeyRing.from_settings(settings)
    except AuthConfigError as e:
        raise SystemExit(f"error: {e}") from None
