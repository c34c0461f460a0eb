"""/api/kb over a real server on loopback, one behaviour a test: create and its refusals, upload (multipart),
list, search, chunks, download, reindex, rebuild streamed as NDJSON, deletes, and the error shapes (status and
code). The module's server holds one knowledge base of three uploaded files, real ones written as bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import running
from zhiku.config import Settings
from zhiku.server.app import create_app

EIFFEL = "The Eiffel Tower in Paris was completed in 1889 for the World's Fair."
TEA = "龙井茶产于浙江省杭州市西湖一带，是中国十大名茶之一。"
KB = "网页库"


def error(r: httpx.Response) -> tuple[int, str]:
    """The status and the error code of an /api refusal."""
    return r.status_code, r.json()["error"]["code"]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, dict[str, Any]]]:
    """A client of a live server (no LLM needed for /api/kb) and the documents of KB, uploaded once."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZHIKU_HOME", str(home))
        app = create_app(Settings(home=home, embedder="use-m3", ui=False), preload=False)
        with running(app) as base, httpx.Client(base_url=base, timeout=120) as c:
            created = c.post("/api/kb", json={"name": KB, "description": "from the web", "chunk_size": 300})
            assert created.status_code == 201, created.text
            files = [("files", ("../../escape.txt", EIFFEL.encode(), "text/plain")),
                     ("files", ("茶.txt", TEA.encode("gb18030"), "text/plain")),
                     ("files", ("broken.pdf", b"%PDF-1.4 truncated", "application/pdf"))]
            r = c.post(f"/api/kb/{KB}/documents", files=files, data={"chunk_size": "200", "chunk_overlap": "20"},
                       params={"wait": True})  # vectors in before the searches below (one phase)
            assert r.status_code == 200, r.text
            yield c, {d["path"]: d for d in r.json()}


def test_create_answers_the_base_and_refuses_its_name_twice(api: tuple[httpx.Client, dict[str, Any]]) -> None:
    c, _ = api
    assert c.get(f"/api/kb/{KB}").json()["chunk_size"] == 300
    assert error(c.post("/api/kb", json={"name": KB})) == (409, "kb_exists")


def test_a_name_with_a_lookalike_slash_is_refused_with_its_reason(api: tuple[httpx.Client, dict[str, Any]]) -> None:
    c, _ = api
    bad = c.post("/api/kb", json={"name": "a\u2215b"})
    assert error(bad) == (400, "invalid_name") and "DIVISION SLASH" in bad.json()["error"]["message"]


def test_upload_keeps_safe_names_and_records_a_failed_parse(api: tuple[httpx.Client, dict[str, Any]]) -> None:
    c, docs = api
    assert set(docs) == {"escape.txt", "茶.txt", "broken.pdf"}  # "../../escape.txt" stays inside the base
    assert docs["escape.txt"]["status"] == "ok" and docs["茶.txt"]["status"] in ("ok", "warning")
    assert docs["broken.pdf"]["status"] == "failed" and docs["broken.pdf"]["error"]
    assert len(c.get(f"/api/kb/{KB}/documents").json()) == 3


def test_search_finds_the_passage_and_keeps_to_the_documents_named(api: tuple[httpx.Client, dict[str, Any]]) -> None:
    c, docs = api
    hits = c.post(f"/api/kb/{KB}/search", json={"query": "西湖 龙井", "top_k": 2}).json()
    assert hits[0]["document"] == "茶.txt" and 0 <= hits[0]["score"] <= 1 and "西湖" in hits[0]["text"]
    only = c.post(f"/api/kb/{KB}/search", json={"query": "西湖", "document_ids": [docs["escape.txt"]["id"]],
                                               "mode": "bm25"}).json()
    assert only == []


def test_a_bad_search_body_is_a_400(api: tuple[httpx.Client, dict[str, Any]]) -> None:
    c, _ = api
    assert error(c.post(f"/api/kb/{KB}/search", json={"query": "x", "mode": "nope"})) == (400, "invalid_request")
    assert error(c.post(f"/api/kb/{KB}/search", json={"query": "x", "top_k": 0})) == (400, "invalid_request")


def test_chunks_and_the_original_come_back(api: tuple[httpx.Client, dict[str, Any]]) -> None:
    c, docs = api
    doc_id = docs["escape.txt"]["id"]
    chunks = c.get(f"/api/kb/{KB}/documents/{doc_id}/chunks").json()
    assert chunks[0]["text"].startswith("The Eiffel Tower") and chunks[0]["ordinal"] == 0
    dl = c.get(f"/api/kb/{KB}/documents/{doc_id}/download")
    assert dl.status_code == 200 and dl.content == EIFFEL.encode()
    assert 'filename="escape.txt"' in dl.headers["content-disposition"]
    assert error(c.get(f"/api/kb/{KB}/documents/99999/download")) == (404, "document_not_found")


def test_reindex_keeps_the_document(api: tuple[httpx.Client, dict[str, Any]]) -> None:
    c, docs = api
    doc_id = docs["escape.txt"]["id"]
    assert c.post(f"/api/kb/{KB}/documents/{doc_id}/reindex").json()["id"] == doc_id


def test_rebuild_streams_its_progress_as_ndjson(api: tuple[httpx.Client, dict[str, Any]]) -> None:
    c, _ = api
    with c.stream("POST", f"/api/kb/{KB}/rebuild") as stream:
        assert stream.headers["content-type"].startswith("application/x-ndjson")
        events = [json.loads(line) for line in stream.iter_lines() if line]
    assert events[-1] == {"done": True} and events[0]["what"] == "chunks"


def test_deleting_a_document_then_the_base(api: tuple[httpx.Client, dict[str, Any]]) -> None:
    c, _ = api
    assert c.post("/api/kb", json={"name": "short-lived"}).status_code == 201
    doc = c.post("/api/kb/short-lived/documents", files=[("files", ("a.txt", b"One line.", "text/plain"))]).json()[0]
    assert c.delete(f"/api/kb/short-lived/documents/{doc['id']}").status_code == 204
    assert error(c.get(f"/api/kb/short-lived/documents/{doc['id']}")) == (404, "document_not_found")
    assert c.delete("/api/kb/short-lived").status_code == 204
    missing = c.get("/api/kb/short-lived")
    assert error(missing) == (404, "kb_not_found") and "not found" in missing.json()["error"]["message"]


def test_search_follows_the_configured_top_k_and_score_threshold(home: Path) -> None:
    """A search that leaves top_k or score_threshold out gets the configured ones, as chat does (issue 24)."""
    lines = [f"Line {i}: the Eiffel Tower in Paris, fact number {i}." for i in range(6)]
    for configured in ({"top_k": 2}, {"top_k": 5, "score_threshold": 0.9}):
        app = create_app(Settings(home=home, embedder="use-m3", ui=False, **configured), preload=False)
        with running(app) as base, httpx.Client(base_url=base, timeout=120) as c:
            if not c.get("/api/kb").json():
                assert c.post("/api/kb", json={"name": "facts"}).status_code == 201
                files = [("files", (f"{i}.txt", line.encode(), "text/plain")) for i, line in enumerate(lines)]
                # wait: every vector in, so that the two searches compared below see one base
                assert c.post("/api/kb/facts/documents", files=files, params={"wait": True}).status_code == 200
            default = c.post("/api/kb/facts/search", json={"query": "Eiffel Tower Paris"}).json()
            wide = c.post("/api/kb/facts/search", json={"query": "Eiffel Tower Paris", "top_k": 6,
                                                         "score_threshold": 0.0}).json()
            assert len(wide) == 6
            if "score_threshold" not in configured:
                assert len(default) == 2 and [h["chunk_id"] for h in default] == [h["chunk_id"] for h in wide[:2]]
            else:
                kept = [h for h in wide[:5] if h["score"] >= 0.9]
                assert len(kept) < 5 and [h["chunk_id"] for h in default] == [h["chunk_id"] for h in kept]
