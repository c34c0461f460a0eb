"""Several real `zhiku serve` processes on one real PostgreSQL (each with its own ZHIKU_HOME: nothing but
the database is shared), and the faults a database brings: wrong settings at start-up, the server going
away mid-request and coming back, a process SIGKILLed mid-ingestion."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import PG_CONTROL, ServeProcess, free_port
from zhiku.chat.types import ChatEvent, ChatResult
from zhiku.config import Settings
from zhiku.kb.stores import open_store

KB = "shared"
LIGHTHOUSE = ("# Saltmarsh lighthouse\n\nThe keeper of the Saltmarsh lighthouse is Oswin Fairweather, who has "
              "lit the lamp every night since 1987 and logs each passing ship in a green ledger.\n")


def on_postgres(home: Path, model: Path, url: str) -> ServeProcess:
    """A `zhiku serve` process on the PostgreSQL at `url`."""
    return ServeProcess(home, model, ZHIKU_EMBEDDER="use-m3", ZHIKU_PARALLEL="1", ZHIKU_CTX="1024",
                        ZHIKU_THREADS="1", ZHIKU_EMBED_THREADS="1", ZHIKU_DATABASE_URL=url)


@pytest.fixture
def pair(tmp_path: Path, smollm_path: Path, pg_url: str) -> Iterator[tuple[ServeProcess, ServeProcess]]:
    a, b = on_postgres(tmp_path / "a", smollm_path, pg_url), on_postgres(tmp_path / "b", smollm_path, pg_url)
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        a.stop()
        b.stop()


def _search(base: str, query: str, top_k: int = 5) -> list[dict[str, Any]]:
    r = httpx.post(f"{base}/api/kb/{KB}/search", json={"query": query, "top_k": top_k}, timeout=60)
    r.raise_for_status()
    return list(r.json())


def _upload(base: str, files: list[tuple[str, bytes]], wait: bool = False) -> httpx.Response:
    return httpx.post(f"{base}/api/kb/{KB}/documents", timeout=600, params={"wait": wait},
                      files=[("files", (n, data, "text/plain")) for n, data in files])


def _kb_chat(base: str, query: str) -> ChatResult:
    body = {"query": query, "kb": KB, "top_k": 2, "max_tokens": 24, "temperature": 0.0, "stream": True}
    with httpx.stream("POST", f"{base}/api/chat/kb", json=body, timeout=120) as r:
        assert r.status_code == 200, r.read()[:300]
        events = [ChatEvent.from_json(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    return ChatResult.from_events(events)


def _files(prefix: str, n: int) -> list[tuple[str, bytes]]:
    return [(f"{prefix}{i:02d}.txt", f"Report {prefix}{i} on topic{prefix}{i}: the harbour tide table for week "
             f"{i} lists {i * 7} ships and a storm warning.\n".encode()) for i in range(n)]


def test_two_servers_share_one_database(pair: tuple[ServeProcess, ServeProcess], pg_url: str, tmp_path: Path) -> None:
    a, b = pair
    assert httpx.post(f"{a.base}/api/kb", json={"name": KB}, timeout=60).status_code == 201
    # Uploaded through A: searchable and cited through B at once (B's home has no copy of anything).
    doc = _upload(a.base, [("lighthouse.md", LIGHTHOUSE.encode())]).json()[0]
    hits = _search(b.base, "Who keeps the Saltmarsh lighthouse?")
    assert hits[0]["document"] == "lighthouse.md" and "Oswin" in hits[0]["text"]
    cited = _kb_chat(b.base, "Who is the keeper of the Saltmarsh lighthouse?")
    assert cited.error is None and cited.sources[0]["document"] == "lighthouse.md"
    got = httpx.get(f"{b.base}/api/kb/{KB}/documents/{doc['id']}/download", timeout=60)
    assert got.status_code == 200 and got.content == LIGHTHOUSE.encode()
    # Conversations created through B are read through A.
    conv = httpx.get(f"{a.base}/api/conversations/{cited.conversation_id}", timeout=60).json()
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant"]
    # Deleted through B: gone from A's next search.
    assert httpx.delete(f"{b.base}/api/kb/{KB}/documents/{doc['id']}", timeout=60).status_code == 204
    assert all(h["document"] != "lighthouse.md" for h in _search(a.base, "Saltmarsh lighthouse keeper"))

    # Both ingest 25 files into the same base at once, 5 of them the same names: each document once.
    shared = _files("both", 5)
    results: dict[str, httpx.Response] = {}
    threads = [threading.Thread(target=lambda s=s, files=files: results.__setitem__(s.base, _upload(s.base, files)))
               for s, files in ((a, _files("a", 20) + shared), (b, _files("b", 20) + shared))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status_code == 200 for r in results.values()), [r.text[:200] for r in results.values()]
    docs = httpx.get(f"{a.base}/api/kb/{KB}/documents", timeout=60).json()
    paths = [d["path"] for d in docs]
    assert len(paths) == len(set(paths)) == 45 and all(d["status"] == "ok" for d in docs)
    assert _search(b.base, "topica7", 1)[0]["document"] == "a07.txt"
    assert _search(a.base, "topicb13", 1)[0]["document"] == "b13.txt"

    # A is SIGKILLed mid-ingestion: every document whole or absent, and B goes on.
    store = open_store(Settings(home=tmp_path / "check", ui=False, database_url=pg_url))
    kb = store.get_kb(KB)
    before = store.counts(kb)[0]
    threading.Thread(target=lambda: _upload_ignoring_errors(a.base, _files("k", 30)), daemon=True).start()
    deadline = time.monotonic() + 120
    while store.counts(kb)[0] < before + 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    a.kill()
    assert store.check(kb) == {"documents_incomplete": [], "orphan_fts_rows": 0}
    after = store.counts(kb)[0]
    assert before + 3 <= after < before + 30  # the kill landed mid-ingestion
    assert _upload(b.base, _files("k", 30)).status_code == 200  # B finishes the job
    assert store.counts(kb)[0] == before + 30 and store.check(kb)["documents_incomplete"] == []
    store.close()


def _upload_ignoring_errors(base: str, files: list[tuple[str, bytes]]) -> None:
    try:
        _upload(base, files, wait=True)  # one phase: embedding keeps the kill inside the ingestion
    except httpx.TransportError:
        pass  # the server is killed under it: that is the point


def _logged(server: ServeProcess, text: str, timeout: float) -> str:
    """The server's stderr so far, read without blocking until `text` shows up or `timeout` passes."""
    assert server.proc is not None and server.proc.stderr is not None
    os.set_blocking(server.proc.stderr.fileno(), False)
    seen = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen and time.monotonic() < deadline:
        seen += server.proc.stderr.read() or b""
        time.sleep(0.1)
    return seen.decode(errors="replace")


def test_database_gone_mid_request_is_a_503_and_recovers(tmp_path: Path, smollm_path: Path, pg_url: str) -> None:
    server = on_postgres(tmp_path / "home", smollm_path, pg_url)
    server.env["ZHIKU_FILE_CHAT_TTL_MINUTES"] = "0.05"  # the temporary-base sweep runs every second
    server.start()
    try:
        assert httpx.post(f"{server.base}/api/kb", json={"name": KB}, timeout=60).status_code == 201
        _upload(server.base, [("lighthouse.md", LIGHTHOUSE.encode())]).raise_for_status()
        assert f"kb:{KB}" in [m["id"] for m in httpx.get(f"{server.base}/v1/models", timeout=60).json()["data"]]
        PG_CONTROL["stop"]()
        try:
            r = httpx.post(f"{server.base}/api/kb/{KB}/search", json={"query": "lighthouse keeper"}, timeout=60)
            assert r.status_code == 503, r.text
            assert "database is unavailable" in r.json()["error"]["message"]
            assert httpx.get(f"{server.base}/api/conversations", timeout=60).status_code == 503
            # the model list cannot say which knowledge bases exist: it says so, rather than leave them out
            models = httpx.get(f"{server.base}/v1/models", timeout=60)
            assert models.status_code == 503 and models.json()["error"]["code"] == "database_unavailable"
            assert int(models.headers["Retry-After"]) >= 1
            log = _logged(server, "expiring temporary knowledge bases failed", 60)
        finally:
            PG_CONTROL["start"]()
        # the sweep during the outage: one line each round, no traceback
        assert "expiring temporary knowledge bases failed: the database is unavailable" in log, log[-2000:]
        assert "Traceback" not in log, log[-2000:]
        hits = _search(server.base, "Who keeps the lighthouse?")  # no restart of zhiku
        assert hits[0]["document"] == "lighthouse.md"
        assert f"kb:{KB}" in [m["id"] for m in httpx.get(f"{server.base}/v1/models", timeout=60).json()["data"]]
    finally:
        server.stop()


@pytest.mark.parametrize(("url", "says"), [
    ("{base_wrong_password}/zhiku", "wrong user or password"),
    ("{base}/no_such_database", "does not exist: create it"),
    ("postgresql://postgres@127.0.0.1:{closed_port}/zhiku", "cannot reach PostgreSQL"),
    ("postgresql://postgres@127.0.0.1:notaport/zhiku", "not a valid postgresql://"),
    ("{plain}", "CREATE EXTENSION vector"),
])
def test_bad_database_settings_stop_the_start_in_one_line(url: str, says: str, pg_server: str, tmp_path: Path,
                                                          smollm_path: Path) -> None:
    base = pg_server
    user_pw, host = base.removeprefix("postgresql://").split("@")
    plain = ""
    if "{plain}" in url:  # a database without pgvector, and a user who may not enable it
        import psycopg

        name = "novec_" + tmp_path.name[-8:].lower().replace("-", "_")
        with psycopg.connect(base + "/postgres", autocommit=True) as conn:
            conn.execute("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plain') THEN "
                         "CREATE ROLE plain LOGIN PASSWORD 'plainpw'; END IF; END $$")
            conn.execute(f"CREATE DATABASE {name} OWNER plain")
        plain = f"postgresql://plain:plainpw@{host}/{name}"
    url = url.format(base=base, base_wrong_password=f"postgresql://postgres:wrong@{host}", closed_port=free_port(),
                     plain=plain)
    env = {"ZHIKU_HOME": str(tmp_path), "ZHIKU_DATABASE_URL": url, "ZHIKU_UI": "false"}
    import os

    out = subprocess.run([sys.executable, "-m", "zhiku", "serve", "--model", str(smollm_path), "--port",
                          str(free_port()), "--no-ui"], env={**os.environ, **env}, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
    assert says in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith("error:") and "wrong" not in out.stderr.replace("wrong user", ""), out.stderr
