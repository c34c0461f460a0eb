"""Hostile and sloppy requests to /v1 and /api (issue 16 items 2 and 5): lone surrogates sent as raw JSON
bytes, non-boolean flags, non-text content parts, a JSON body labelled text/plain, a `kb:` model's error
shape and usage chunk, and `GET /v1` in a browser. A real server on loopback; none of these requests
needs the model to run (each is refused, or answered by a knowledge base without passages)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import running
from zhiku.config import Settings
from zhiku.server.app import create_app

LONE = b'"harbour \\ud800 tide"'  # JSON's own escape for an unpaired high surrogate: valid JSON, invalid text


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, smollm_path: Path) -> Iterator[str]:
    home = tmp_path_factory.mktemp("hostile-v1")
    settings = Settings(home=home, model=str(smollm_path), ctx=512, parallel=1, threads=1, ui=False,
                        embedder="use-m3")
    with running(create_app(settings, preload=False)) as base:
        httpx.post(base + "/api/kb", json={"name": "empty"}, timeout=60).raise_for_status()
        yield base


SURROGATE_REQUESTS = [
    ("/v1/chat/completions", b'{"messages":[{"role":"user","content":' + LONE + b"}]}"),
    ("/v1/chat/completions", b'{"stream":true,"messages":[{"role":"user","content":' + LONE + b"}]}"),
    ("/v1/chat/completions", b'{"model":"kb:empty","messages":[{"role":"user","content":' + LONE + b"}]}"),
    ("/v1/completions", b'{"prompt":' + LONE + b"}"),
    ("/v1/embeddings", b'{"input":[' + LONE + b"]}"),
    ("/api/kb", b'{"name":"ok","description":' + LONE + b"}"),
    ("/api/kb/empty/search", b'{"query":' + LONE + b"}"),
    ("/api/chat/llm", b'{"query":' + LONE + b',"stream":false}'),
    ("/v1/chat/completions", b'{"messages":[{"role":"user","content":"fine","\\udc00key":1}]}'),  # in a key
]


def test_lone_surrogates_are_a_clear_400_and_the_connection_stays_usable(server: str) -> None:
    url = urlsplit(server)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    try:
        conn.request("GET", "/health")
        conn.getresponse().read()
        sock = conn.sock
        for path, body in SURROGATE_REQUESTS:
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            reply = json.loads(resp.read())
            assert resp.status == 400, (path, body, reply)
            assert "surrogate" in reply["error"]["message"] and reply["error"]["code"] == "invalid_unicode"
            assert conn.sock is sock, f"{path}: the keep-alive connection was dropped"
    finally:
        conn.close()
    assert {k["name"] for k in httpx.get(server + "/api/kb", timeout=30).json()} == {"empty"}


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stream": 1}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stream": True,
                              "stream_options": {"include_usage": "true"}}),
    ("/v1/completions", {"prompt": "hi", "echo": "no"}),
    ("/api/chat/llm", {"query": "hi", "stream": "no"}),
    ("/api/kb", {"name": "flags", "title_enhance": "yes"}),
])
def test_non_boolean_flags_are_refused(server: str, path: str, body: dict[str, object]) -> None:
    r = httpx.post(server + path, json=body, timeout=60)
    assert r.status_code == 400, r.text
    assert "valid boolean" in r.json()["error"]["message"]


def test_content_parts_other_than_text_are_refused(server: str) -> None:
    for part in ({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                 {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}):
        r = httpx.post(server + "/v1/chat/completions", timeout=60, json={
            "messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, part]}]})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert f"'{part['type']}' is not supported" in error["message"] and error["param"] == "messages.0.content"


def test_a_json_body_labelled_text_plain_is_told_so(server: str) -> None:
    r = httpx.post(server + "/v1/chat/completions", content=b'{"messages":[{"role":"user","content":"hi"}]}',
                   headers={"Content-Type": "text/plain"}, timeout=60)
    assert r.status_code == 400
    assert "Content-Type: application/json" in r.json()["error"]["message"]
    assert "text/plain" in r.json()["error"]["message"]


def test_a_kb_model_answers_in_openai_shape(server: str) -> None:
    # A bad field: OpenAI's error shape, naming the field.
    r = httpx.post(server + "/v1/chat/completions", timeout=60, json={
        "model": "kb:empty", "messages": [{"role": "user", "content": "tides?"}], "top_k": "three"})
    assert r.status_code == 400 and set(r.json()) == {"error"}
    assert r.json()["error"]["param"] == "top_k" and r.json()["error"]["type"] == "invalid_request_error"

    def chunks(include_usage: bool | None) -> list[dict[str, object]]:
        body: dict[str, object] = {"model": "kb:empty", "stream": True,
                                   "messages": [{"role": "user", "content": "When does the ferry leave?"}]}
        if include_usage is not None:
            body["stream_options"] = {"include_usage": include_usage}
        with httpx.stream("POST", server + "/v1/chat/completions", json=body, timeout=120) as resp:
            assert resp.status_code == 200
            lines = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
        assert lines[-1] == "[DONE]"
        return [json.loads(x) for x in lines[:-1]]

    plain = chunks(None)
    assert not [c for c in plain if "usage" in c], "no usage unless stream_options.include_usage asks for it"
    assert plain[-1]["choices"][0]["finish_reason"] == "stop"
    counted = chunks(True)
    assert counted[-1]["choices"] == [] and set(counted[-1]["usage"]) == {"prompt_tokens", "completion_tokens",
                                                                       "total_tokens"}
    assert "usage" not in counted[-2] and counted[-2]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("path", ["/api/conversations?offset=1065551507993804406784",
                                  "/api/kb/empty/documents/99999999999999999999999",
                                  "/api/kb/empty/documents/99999999999999999999999/chunks"])
def test_numbers_past_the_database_integer_are_a_clear_400(server: str, path: str) -> None:
    # found by schemathesis: SQLite raised OverflowError (a 500) on an offset past 2**63
    r = httpx.get(server + path, timeout=30)
    assert r.status_code == 400 and "less than or equal" in r.json()["error"]["message"], r.text


def test_get_v1_points_to_the_docs_and_models(server: str) -> None:
    r = httpx.get(server + "/v1", timeout=30)
    assert r.status_code == 200
    assert r.json()["models"] == "/v1/models" and r.json()["docs"] == "/docs"
    assert httpx.get(server + r.json()["models"], timeout=30).status_code == 200


def test_a_model_without_tool_support_says_so(server: str) -> None:
    tools = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
    ask = [{"role": "user", "content": "What time is it?"}]
    for tool_choice in (None, "auto", "required"):
        body = {"messages": ask, "tools": tools, **({"tool_choice": tool_choice} if tool_choice else {})}
        r = httpx.post(server + "/v1/chat/completions", json=body, timeout=120)
        assert r.status_code == 400, r.text
        assert "cannot take tools" in r.json()["error"]["message"] and r.json()["error"]["param"] == "tools"
    # "none" needs no tool support: a plain answer.
    r = httpx.post(server + "/v1/chat/completions", timeout=120,
                   json={"messages": ask, "tools": tools, "tool_choice": "none", "max_tokens": 8})
    assert r.status_code == 200 and "tool_calls" not in r.json()["choices"][0]["message"], r.text


def test_an_unexpected_error_is_a_500_that_keeps_the_connection(tmp_path: Path) -> None:
    # A service that raises stands in for a bug, which cannot be had on demand (a forced failure).
    app = create_app(Settings(home=tmp_path, ui=False, embedder="use-m3"), preload=False)

    def broken(include_temporary: bool = False) -> list[object]:
        raise RuntimeError("a bug in the knowledge-base layer")

    with running(app) as base:
        app.state.services.kb.list = broken
        url = urlsplit(base)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        try:
            conn.request("GET", "/health")
            conn.getresponse().read()
            sock = conn.sock
            conn.request("GET", "/api/kb")
            resp = conn.getresponse()
            error = json.loads(resp.read())["error"]
            assert resp.status == 500 and "RuntimeError" in error["message"] and error["type"] == "server_error"
            conn.request("GET", "/health")
            assert conn.getresponse().status == 200 and conn.sock is sock, "the connection was dropped"
        finally:
            conn.close()
