"""Shared fixtures: a throw-away ZHIKU_HOME, the real smollm2-135m model, a live server on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from zhiku import packs
from zhiku.config import Settings
from zhiku.server.run import free_port as free_port  # re-exported for the tests
from zhiku.server.run import serving as running  # the tests' name for a live server of an app, on loopback

if TYPE_CHECKING:
    from zhiku.services import Services

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TEST_MODEL = "smollm2-135m"


@pytest.fixture(scope="session")
def models_dir() -> Path:
    path = Path(os.environ.get("ZHIKU_MODELS_DIR") or REPO / ".cache" / "models")
    os.environ["ZHIKU_MODELS_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def smollm_path(models_dir: Path) -> Path:
    """The real test model, installed from its pack once per machine."""
    return packs.pull(models_dir, TEST_MODEL)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> Path:
    """An empty ZHIKU_HOME for one test; settings read nothing from the user's real home."""
    h = tmp_path / "zhiku-home"
    h.mkdir()
    monkeypatch.setenv("ZHIKU_HOME", str(h))
    monkeypatch.setenv("ZHIKU_MODELS_DIR", str(models_dir))
    return h


def settings_for(home: Path, model: Path, **overrides: Any) -> Settings:
    """Settings for a test: the small model, a small context, two slots of one thread each (llama.cpp
    threads busy-wait, so more threads than free cores collapses throughput), use-m3, no UI."""
    base: dict[str, Any] = dict(home=home, model=str(model), ctx=2048, parallel=2, threads=1, ui=False,
                                embedder="use-m3")
    return Settings(**{**base, **overrides})


@pytest.fixture
def settings(home: Path, smollm_path: Path) -> Settings:
    return settings_for(home, smollm_path)


class ServeProcess:
    """`zhiku serve` as a real subprocess on a free loopback port: ZHIKU_HOME=home, no UI, `env` (ZHIKU_*
    settings) on top. start() waits for /health (and may be called again after a kill), kill() is a crash
    (SIGKILL), stop() a shutdown (SIGTERM, then SIGKILL)."""

    def __init__(self, home: Path, model: Path, **env: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home, self.model, self.env = home, model, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = ""

    def start(self, timeout: float = 120) -> str:
        port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zhiku", "serve", "--model", str(self.model), "--host", "127.0.0.1",
             "--port", str(port), "--no-ui"],
            env={**os.environ, "ZHIKU_HOME": str(self.home), "ZHIKU_UI": "false", **self.env},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"server exited with {self.proc.returncode}: {err[-2000:]}")
            try:
                if httpx.get(self.base + "/health", timeout=1).status_code == 200:
                    return self.base
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError("server did not come up")

    @property
    def rss(self) -> int:
        """The server's resident memory, in bytes."""
        import psutil

        assert self.proc is not None
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def module_server(tmp: pytest.TempPathFactory, model: Path, stock: Callable[[Services], None] | None = None,
                  **overrides: Any) -> Iterator[SimpleNamespace]:
    """A live server for a test module: its own ZHIKU_HOME (no zhiku.toml from the real home), settings_for
    with `overrides`, on a loopback port; `stock` fills its services first. Yields base, app, services, settings."""
    from zhiku.server.app import create_app

    home = tmp.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZHIKU_HOME", str(home))
        settings = settings_for(home, model, **overrides)
        app = create_app(settings)
        services: Services = app.state.services
        if stock is not None:
            stock(services)
        with running(app) as base:
            yield SimpleNamespace(base=base, app=app, services=services, settings=settings)


def docx_bytes(heading: str, *paragraphs: str) -> bytes:
    """A Word file written by python-docx: one heading, then the paragraphs."""
    import io

    import docx

    d = docx.Document()
    d.add_heading(heading, level=1)
    for text in paragraphs:
        d.add_paragraph(text)
    out = io.BytesIO()
    d.save(out)
    return out.getvalue()


class ScriptedModel:
    """Base of the scripted models that stand in for the LLM where a test must force a behaviour a real small
    model shows only by chance (subclasses define `chat`): nothing to load, about 4 characters a token."""

    model_id = "scripted"
    context_length = 4096

    def start(self) -> None:
        pass

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1

    def count_chat_tokens(self, messages: list[dict[str, Any]]) -> int:
        return sum(self.count_tokens(str(m.get("content") or "")) + 4 for m in messages)


class _Searxng(BaseHTTPRequestHandler):
    """A loopback stand-in for a SearXNG instance (no public search engine is reachable here): its JSON API
    answers every query with the server's `results`; anything else is refused, as SearXNG does."""

    server: _SearxngServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if not self.path.startswith("/search") or "format=json" not in self.path:
            self.send_response(403)
            self.end_headers()
            return
        body = json.dumps({"query": "q", "results": self.server.results}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _SearxngServer(ThreadingHTTPServer):
    results: list[dict[str, Any]]


@contextmanager
def searxng_stub(results: list[dict[str, Any]]) -> Iterator[str]:
    """A SearXNG stand-in on a loopback port that finds `results`; yields its base URL."""
    server = _SearxngServer(("127.0.0.1", 0), _Searxng)
    server.results = results
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# ---- a real PostgreSQL + pgvector (the `pgserver` wheel's binaries), for the storage tests -----------

PG_PASSWORD = "zhiku-test"
PG_CONTROL: dict[str, Callable[[], None]] = {}  # "stop" / "start" the session's server (fault tests)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A throw-away PostgreSQL 16 with pgvector on a loopback port; yields its base URL (no database)."""
    from zhiku.local_postgres import LocalPostgres

    pg = LocalPostgres(password=PG_PASSWORD, options="-c fsync=off -c max_connections=200")
    PG_CONTROL["start"] = pg.start
    PG_CONTROL["stop"] = lambda: pg.stop("immediate")
    try:
        pg.start()
        yield pg.url
    finally:
        pg.remove()


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh database on the test PostgreSQL for one test; dropped afterwards."""
    import uuid

    import psycopg

    from zhiku import db

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_server + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield f"{pg_server}/{name}"
    db.close_pools()
    with psycopg.connect(pg_server + "/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each storage test runs on both stores: '' (SQLite under ZHIKU_HOME) and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return ""
    return str(request.getfixturevalue("pg_url"))
