"""/api/kb over a real server on loopback: upload (multipart), list, chunks, search, download, reindex,
rebuild streamed as NDJSON, deletes, and the error shapes."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from conftest import running
from zhiku.config import Settings
from zhiku.server.app import create_app

EIFFEL = "The Eiffel Tower in Paris was completed in 1889 for the World's Fair."
TEA = "龙井茶产于浙江省杭州市西湖一带，是中国十大名茶之一。"


def test_kb_http_api(home: Path) -> None:
    settings = Settings(home=home, embedder="use-m3", ui=False)
    app = create_app(settings, preload=False)  # no LLM needed for /api/kb
    with running(app) as base, httpx.Client(base_url=base, timeout=120) as c:
        assert c.get("/api/kb").json() == []
        r = c.post("/api/kb", json={"name": "网页库", "description": "from the web", "chunk_size": 300})
        assert r.status_code == 201 and r.json()["chunk_size"] == 300
        assert c.post("/api/kb", json={"name": "网页库"}).status_code == 409
        bad = c.post("/api/kb", json={"name": "a\u2215b"})
        assert bad.status_code == 400 and "DIVISION SLASH" in bad.json()["error"]["message"]

        files = [("files", ("../../escape.txt", EIFFEL.encode(), "text/plain")),
                 ("files", ("茶.txt", TEA.encode("gb18030"), "text/plain")),
                 ("files", ("broken.pdf", b"%PDF-1.4 truncated", "application/pdf"))]
        r = c.post("/api/kb/网页库/documents", files=files, data={"chunk_size": "200", "chunk_overlap": "20"})
        assert r.status_code == 200, r.text
        docs = {d["path"]: d for d in r.json()}
        assert set(docs) == {"escape.txt", "茶.txt", "broken.pdf"}
        assert docs["escape.txt"]["status"] == "ok" and docs["茶.txt"]["status"] in ("ok", "warning")
        assert docs["broken.pdf"]["status"] == "failed" and docs["broken.pdf"]["error"]
        assert len(c.get("/api/kb/网页库/documents").json()) == 3

        hits = c.post("/api/kb/网页库/search", json={"query": "西湖 龙井", "top_k": 2}).json()
        assert hits[0]["document"] == "茶.txt" and 0 <= hits[0]["score"] <= 1 and "西湖" in hits[0]["text"]
        only = c.post("/api/kb/网页库/search", json={"query": "西湖", "document_ids": [docs["escape.txt"]["id"]],
                                             "mode": "bm25"}).json()
        assert only == []
        assert c.post("/api/kb/网页库/search", json={"query": "x", "mode": "nope"}).status_code == 400

        doc_id = docs["escape.txt"]["id"]
        chunks = c.get(f"/api/kb/网页库/documents/{doc_id}/chunks").json()
        assert chunks[0]["text"].startswith("The Eiffel Tower") and chunks[0]["ordinal"] == 0
        dl = c.get(f"/api/kb/网页库/documents/{doc_id}/download")
        assert dl.status_code == 200 and dl.content == EIFFEL.encode()
        assert 'filename="escape.txt"' in dl.headers["content-disposition"]
        assert c.get("/api/kb/网页库/documents/99999/download").status_code == 404
        assert c.post(f"/api/kb/网页库/documents/{doc_id}/reindex").json()["id"] == doc_id

        with c.stream("POST", "/api/kb/网页库/rebuild") as stream:
            assert stream.headers["content-type"].startswith("application/x-ndjson")
            events = [json.loads(line) for line in stream.iter_lines() if line]
        assert events[-1] == {"done": True} and events[0]["what"] == "chunks"

        assert c.delete(f"/api/kb/网页库/documents/{doc_id}").status_code == 204
        assert c.get(f"/api/kb/网页库/documents/{doc_id}").status_code == 404
        assert c.delete("/api/kb/网页库").status_code == 204
        missing = c.get("/api/kb/网页库")
        assert missing.status_code == 404 and "not found" in missing.json()["error"]["message"]


def test_search_follows_the_configured_top_k_and_score_threshold(home: Path) -> None:
    """A search that leaves top_k or score_threshold out gets the configured ones, as chat does (issue 24)."""
    lines = [f"Line {i}: the Eiffel Tower in Paris, fact number {i}." for i in range(6)]
    for configured in ({"top_k": 2}, {"top_k": 5, "score_threshold": 0.9}):
        app = create_app(Settings(home=home, embedder="use-m3", ui=False, **configured), preload=False)
        with running(app) as base, httpx.Client(base_url=base, timeout=120) as c:
            if not c.get("/api/kb").json():
                assert c.post("/api/kb", json={"name": "facts"}).status_code == 201
                files = [("files", (f"{i}.txt", line.encode(), "text/plain")) for i, line in enumerate(lines)]
                assert c.post("/api/kb/facts/documents", files=files).status_code == 200
            default = c.post("/api/kb/facts/search", json={"query": "Eiffel Tower Paris"}).json()
            wide = c.post("/api/kb/facts/search", json={"query": "Eiffel Tower Paris", "top_k": 6,
                                                         "score_threshold": 0.0}).json()
            assert len(wide) == 6
            if "score_threshold" not in configured:
                assert len(default) == 2 and [h["chunk_id"] for h in default] == [h["chunk_id"] for h in wide[:2]]
            else:
                kept = [h for h in wide[:5] if h["score"] >= 0.9]
                assert len(kept) < 5 and [h["chunk_id"] for h in default] == [h["chunk_id"] for h in kept]
