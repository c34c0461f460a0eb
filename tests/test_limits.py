"""Request limits: each crossed limit gets a clear 4xx in the OpenAI error shape, before work is done."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import pytest

from conftest import running
from zhiku.config import Settings
from zhiku.server.app import create_app

KB = "limits"
UPLOAD = f"/api/kb/{KB}/documents"
# Small caps keep the files (and their ingestion, in the positive control) cheap; the checks are the same.
KB_ = 1024
MB = 1024 * KB_
CAPS = {"max_body_mb": 0.5, "max_upload_mb": 40 / 1024, "max_request_upload_mb": 100 / 1024,
        "max_files_per_request": 3, "max_messages": 4, "max_tokens_cap": 64}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, smollm_path: os.PathLike[str]) -> Iterator[str]:
    home = tmp_path_factory.mktemp("limits-home")
    s = Settings(home=home, model=str(smollm_path), ctx=512, parallel=1, threads=2, ui=False,
                 embedder="use-m3", **CAPS)
    with running(create_app(s)) as url:
        httpx.post(url + "/api/kb", json={"name": KB}, timeout=60).raise_for_status()
        yield url


def refused(r: httpx.Response, status: int, code: str | None = None) -> dict[str, object]:
    assert r.status_code == status, (r.status_code, r.text[:300])
    err: dict[str, object] = r.json()["error"]
    assert isinstance(err["message"], str) and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return err


def chat(**extra: object) -> dict[str, object]:
    return {"model": "smollm2-135m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, **extra}


def test_body_over_the_limit_is_413(base: str) -> None:
    big = chat(messages=[{"role": "user", "content": "x" * (MB // 2 + 10)}])
    err = refused(httpx.post(base + "/v1/chat/completions", json=big, timeout=60), 413, "request_too_large")
    assert "max_body_mb" in str(err["message"])
    # Chunked, with no Content-Length to trust: counted as it arrives.
    payload = json.dumps(big).encode()
    chunks = (payload[i:i + 65536] for i in range(0, len(payload), 65536))
    r = httpx.post(base + "/v1/chat/completions", content=chunks, timeout=60,
                   headers={"Content-Type": "application/json"})
    refused(r, 413, "request_too_large")
    # Just under the limit goes through to the route (here: a normal answer).
    assert httpx.post(base + "/v1/chat/completions", json=chat(), timeout=120).status_code == 200


def files(n: int, size: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    line = b"Harbour note: the pilot boat leaves at dawn and returns with the tide.\n"
    return [("files", (f"note{i}.txt", (line * (size // len(line) + 1))[:size], "text/plain")) for i in range(n)]


def test_too_many_files_is_413(base: str) -> None:
    refused(httpx.post(base + UPLOAD, files=files(4, 10), timeout=60), 413, "too_many_files")
    # Every multipart route gets the same limits (here: file chat's uploads).
    refused(httpx.post(base + "/api/chat/files", files=files(4, 10), timeout=60), 413, "too_many_files")


def test_file_over_the_per_file_limit_is_413(base: str) -> None:
    r = httpx.post(base + UPLOAD, files=files(1, 40 * KB_ + 1), timeout=60)
    assert "note0.txt" in str(refused(r, 413, "file_too_large")["message"])


def test_upload_over_the_per_request_limit_is_413(base: str) -> None:
    r = httpx.post(base + UPLOAD, files=files(3, 38 * KB_), timeout=60)  # each fine, 114 KB together
    assert "max_request_upload_mb" in str(refused(r, 413, "request_too_large")["message"])


def test_uploads_within_the_limits_are_accepted(base: str) -> None:
    r = httpx.post(base + UPLOAD, files=files(3, 30 * KB_), timeout=300)  # 90 KB: 3 files, each < 40 KB
    assert r.status_code == 200 and [d["status"] for d in r.json()] == ["ok"] * 3, r.text[:300]


def test_too_many_messages_is_400(base: str) -> None:
    many = [{"role": "user", "content": "hi"}] * 5
    err = refused(httpx.post(base + "/v1/chat/completions", json=chat(messages=many), timeout=60), 400,
                  "array_above_max_length")
    assert err["param"] == "messages"
    err = refused(httpx.post(base + "/api/chat", json={"query": "hi", "history": many}, timeout=60), 400,
                  "array_above_max_length")
    assert err["param"] == "history"
    assert httpx.post(base + "/v1/chat/completions", json=chat(messages=many[:4]), timeout=120).status_code == 200


def test_max_tokens_over_the_cap_is_400(base: str) -> None:
    for path, body in (("/v1/chat/completions", chat(max_tokens=65)), ("/v1/completions", {
            "model": "smollm2-135m", "prompt": "Hi", "max_tokens": 100_000}),
            ("/v1/chat/completions", chat(max_completion_tokens=1000)),
            ("/api/chat", {"query": "hi", "max_tokens": 100_000})):
        err = refused(httpx.post(base + path, json=body, timeout=60), 400, "integer_above_max_value")
        assert "max_tokens_cap" in str(err["message"])
    assert httpx.post(base + "/v1/chat/completions", json=chat(max_tokens=64), timeout=120).status_code == 200


def test_prompt_longer_than_the_context_is_400(base: str) -> None:
    long = chat(messages=[{"role": "user", "content": "lorem ipsum dolor " * 400}])  # ~1,600 tokens > 512
    r = httpx.post(base + "/v1/chat/completions", json=long, timeout=60)
    assert r.status_code == 400, r.text[:300]
    assert r.json()["error"]["message"]
