"""Shared fixtures: a throw-away ZHIKU_HOME, the real smollm2-135m model, a live server on loopback."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from zhiku import packs
from zhiku.config import Settings

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


@pytest.fixture
def settings(home: Path, smollm_path: Path) -> Settings:
    """Settings for a test: the small model, a small context, two slots of one thread each (llama.cpp
    threads busy-wait, so more threads than free cores collapses throughput), no UI."""
    return Settings(home=home, model=str(smollm_path), ctx=2048, parallel=2, threads=1, ui=False,
                    embedder="use-m3")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port in a thread; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health", timeout=1).status_code < 500:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        raise RuntimeError("server did not come up")
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)


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
