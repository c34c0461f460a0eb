"""Start the server process; or serve an app from a thread of this process (tests and benchmarks)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from zhiku.config import Settings


def serve(settings: Settings, ui: bool | None = None) -> None:
    from zhiku.server.app import create_app
    from zhiku.server.security import startup_checks
    from zhiku.services import Services

    startup_checks(settings)  # exposure warning; a bad keys file stops here, before the model loads
    services = Services(settings)
    services.llm.start()  # load first: a missing or corrupt model is a one-line ModelError, not a traceback
    app = create_app(settings, services=services, ui=ui)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info",
                timeout_graceful_shutdown=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: Any, ready_timeout: float = 120) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port from a thread of this process, so that a test or a
    benchmark drives a real server over HTTP; yields its base URL once /health answers, stops it after."""
    import httpx

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout
    while True:
        try:
            if httpx.get(base + "/health", timeout=1).status_code < 500:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError(f"the server on {base} did not come up")
        time.sleep(0.1)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)
