"""One error table: the same error kinds give the same status and code on /v1 (plain and `kb:` models) and
/api, on a live server with the real smollm2-135m and a real knowledge base (use-m3 embedder).

The server has one generation slot and no queue, so a long generation in flight makes every further
request "busy" for real.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from conftest import module_server
from zhiku.chat.types import ChatEvent
from zhiku.errors import KINDS, ZhikuError
from zhiku.server.errors import HTTP, error_body
from zhiku.services import Services

NOTE = "The Saltmarsh lighthouse keeper is Oswin Fairweather. He paints the tower red and white each spring."
QUESTION = [{"role": "user", "content": "Who keeps the Saltmarsh lighthouse?"}]
COUNTING = "1, 2, 3, 4, 5, 6,"


@pytest.fixture(scope="module")
def srv(smollm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    def stock(services: Services) -> None:
        services.kb.create("notes")
        services.kb.add_bytes("notes", "lighthouse.txt", NOTE.encode())

    with module_server(tmp_path_factory, smollm_path, stock, parallel=1, queue_size=0, temperature=0.0) as srv:
        yield SimpleNamespace(base=srv.base, llm=srv.services.llm)


def sse_events(r: httpx.Response) -> list[ChatEvent]:
    lines = [line for line in r.text.splitlines() if line.startswith("data: ") and line != "data: [DONE]"]
    return [ChatEvent.from_json(line[6:]) for line in lines]


def openai_error(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["message"]
    err: dict[str, Any] = body["error"]
    return err


def test_every_kind_has_one_status() -> None:
    assert set(HTTP) == set(KINDS)
    err = ZhikuError("busy now", kind="busy", code="server_busy", retry_after=3)
    assert error_body(err) == {"error": {"message": "busy now", "type": "server_error", "param": None,
                                         "code": "server_busy"}}
    # an error read back from a chat event is the same error
    again = ZhikuError.from_dict(err.to_dict())
    assert (again.kind, again.code, again.retry_after, again.message) == ("busy", "server_busy", 3, "busy now")


def test_unknown_knowledge_base(srv: SimpleNamespace) -> None:
    for stream in (False, True):
        r = httpx.post(srv.base + "/v1/chat/completions", json={"model": "kb:nope", "messages": QUESTION,
                                                                "stream": stream})
        assert r.status_code == 404, r.text
        err = openai_error(r)
        assert (err["type"], err["code"], err["param"]) == ("not_found_error", "model_not_found", "model")
    one = httpx.post(srv.base + "/api/chat/kb", json={"query": "x", "kb": "nope", "stream": False})
    assert one.status_code == 404 and openai_error(one)["code"] == "kb_not_found"
    assert httpx.get(srv.base + "/api/kb/nope").json()["error"]["code"] == "kb_not_found"
    streamed = sse_events(httpx.post(srv.base + "/api/chat/kb", json={"query": "x", "kb": "nope"}))
    assert [e.type for e in streamed] == ["error"]
    assert (streamed[0].error_kind, streamed[0].data["code"]) == ("not_found", "kb_not_found")


def test_context_overflow_is_400_everywhere(srv: SimpleNamespace) -> None:
    long = "hello " * 2500  # beyond ctx 2048
    r = httpx.post(srv.base + "/v1/chat/completions", json={"messages": [{"role": "user", "content": long}]})
    assert r.status_code == 400 and openai_error(r)["code"] == "context_length_exceeded"
    one = httpx.post(srv.base + "/api/chat/llm", json={"query": long, "stream": False, "save": False})
    assert one.status_code == 400 and openai_error(one)["code"] == "context_length_exceeded"
    streamed = sse_events(httpx.post(srv.base + "/api/chat/llm", json={"query": long, "save": False}))
    assert (streamed[-1].error_kind, streamed[-1].data["code"]) == ("invalid_request", "context_length_exceeded")


def test_busy_gives_503_with_retry_after_on_every_route(srv: SimpleNamespace) -> None:
    started = threading.Event()
    stop = threading.Event()

    def hold_the_slot() -> None:
        body = {"prompt": COUNTING, "max_tokens": 1500, "temperature": 0, "stream": True}
        with httpx.stream("POST", srv.base + "/v1/completions", json=body, timeout=120) as r:
            for _ in r.iter_lines():
                started.set()
                if stop.is_set():
                    break

    holder = threading.Thread(target=hold_the_slot)
    holder.start()
    try:
        assert started.wait(60) and srv.llm.stats()["active"] == 1
        kb = {"model": "kb:notes", "messages": QUESTION, "max_tokens": 8}
        for path, body in (("/v1/chat/completions", kb), ("/v1/chat/completions", {**kb, "stream": True}),
                           ("/v1/chat/completions", {"messages": QUESTION}),
                           ("/api/chat/kb", {"query": "Who keeps the lighthouse?", "kb": "notes", "stream": False}),
                           ("/api/chat/llm", {"query": "hi", "stream": False})):
            r = httpx.post(srv.base + path, json=body, timeout=60)
            assert r.status_code == 503, (path, body, r.text)
            assert int(r.headers["Retry-After"]) >= 1
            err = openai_error(r)
            assert (err["type"], err["code"]) == ("server_error", "server_busy"), (path, err)
        streamed = sse_events(httpx.post(srv.base + "/api/chat/llm", json={"query": "hi", "save": False}, timeout=60))
        assert streamed[-1].error_kind == "busy" and streamed[-1].data["code"] == "server_busy"
        assert streamed[-1].data["retry_after"] >= 1
    finally:
        stop.set()
        holder.join(timeout=60)
    deadline = time.monotonic() + 30  # the server frees the slot within a token of the client leaving
    while srv.llm.stats()["active"] and time.monotonic() < deadline:
        time.sleep(0.05)
    # the slot is free again: the same knowledge-base question is answered, with its sources
    r = httpx.post(srv.base + "/v1/chat/completions", json={"model": "kb:notes", "messages": QUESTION,
                                                            "max_tokens": 8}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["sources"][0]["document"] == "lighthouse.txt"
