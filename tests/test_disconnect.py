"""A dropped request that is not streamed stops its generation (issue 20): /v1/completions,
/v1/chat/completions, /api/chat/{llm,kb} and Chatchat's /chat/{chat,knowledge_base_chat,fastchat} and
/other/completion with stream false. A real server with the real smollm2-135m on
loopback; the client is a raw socket, closed while the model generates (as `curl -m 2` does); /metrics
must then show the slot free and the cancellation counted, long before max_tokens could have been reached.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import module_server
from zhiku.services import Services

COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"  # a raw prompt the model keeps continuing
# A chat turn smollm2 answers at length at temperature 0 (about 190 tokens): still generating when the
# connection is closed. Were it done before, the cancellation counter would not move and the test fail.
LONG_CHAT = "Count from 1 to 500, separated by commas. Write every number."
MAX_TOKENS = 1500
CANCELLED = "zhiku_llm_requests_cancelled_total"
ACTIVE = "zhiku_llm_active_slots"
DECODING = "zhiku_llm_decoding_slots"
TOKENS = "zhiku_llm_completion_tokens_total"


def stock(services: Services) -> None:
    services.kb.create("counting")
    numbers = ", ".join(str(i) for i in range(1, 501))
    services.kb.add_bytes("counting", "numbers.txt", f"Counting from 1 to 500: {numbers}.".encode())


@pytest.fixture(scope="module")
def srv(smollm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    # answer_check off: its gate may refuse a question before the model writes, and this is about the writing
    with module_server(tmp_path_factory, smollm_path, stock, temperature=0.0, max_tokens_cap=MAX_TOKENS,
                       answer_check=False) as srv:
        yield srv


def metrics(base: str) -> dict[str, float]:
    """The server's /metrics, as {sample name: value}."""
    text = httpx.get(base + "/metrics", timeout=30).text
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def until(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def drop_while_generating(base: str, path: str, body: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """POST `body` on a raw connection, close it once the model generates; the metrics before and after the
    slot is free again."""
    before = metrics(base)
    url = urlsplit(base)
    data = json.dumps(body).encode()
    sock = socket.create_connection((url.hostname, url.port))
    try:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        # past the first token: the answer is being written (a client leaving while its request is queued or
        # its prompt read was already noticed; the non-streamed answer then went on to max_tokens)
        if not until(lambda: metrics(base)[DECODING] == 1, 120):
            sock.settimeout(1)
            pytest.fail(f"the generation never started; the server answered {sock.recv(2000)!r}")
    finally:
        sock.close()  # the client gives up while its answer is being generated
    # generous: the slot frees within a token; the deadline only guards a machine shared with other runs
    assert until(lambda: (m := metrics(base))[ACTIVE] == 0 and m[CANCELLED] > before[CANCELLED], 60), \
        f"the dropped request was not cancelled: {metrics(base)}"
    return before, metrics(base)


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/completions", {"prompt": COUNTING, "max_tokens": MAX_TOKENS}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": LONG_CHAT}], "max_tokens": MAX_TOKENS}),
    ("/api/chat/llm", {"query": LONG_CHAT, "stream": False, "save": False, "max_tokens": MAX_TOKENS}),
    ("/api/chat/kb", {"query": LONG_CHAT, "kb": "counting", "stream": False, "save": False,
                      "max_tokens": MAX_TOKENS, "score_threshold": 0.0}),
    # Langchain-Chatchat's routes, stream false (their default)
    ("/chat/chat", {"query": LONG_CHAT, "stream": False, "max_tokens": MAX_TOKENS}),
    ("/chat/knowledge_base_chat", {"query": LONG_CHAT, "knowledge_base_name": "counting", "stream": False,
                                   "max_tokens": MAX_TOKENS, "score_threshold": 2.0}),
    ("/chat/fastchat", {"messages": [{"role": "user", "content": LONG_CHAT}], "max_tokens": MAX_TOKENS}),
    ("/other/completion", {"query": COUNTING, "max_tokens": MAX_TOKENS}),
], ids=["completions", "chat-completions", "api-chat-llm", "api-chat-kb", "chatchat-chat", "chatchat-kb-chat",
        "chatchat-fastchat", "chatchat-completion"])
def test_a_dropped_request_frees_its_slot_and_is_counted(srv: SimpleNamespace, path: str,
                                                         body: dict[str, Any]) -> None:
    before, after = drop_while_generating(srv.base, path, body)
    assert after[CANCELLED] == before[CANCELLED] + 1
    assert after[TOKENS] - before[TOKENS] < MAX_TOKENS  # stopped early, not run on to max_tokens
    # the freed slot serves the next request at once
    r = httpx.post(srv.base + "/v1/completions", json={"prompt": COUNTING, "max_tokens": 3}, timeout=60)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3

