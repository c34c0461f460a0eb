"""Nothing left behind (issue 20): the staging copy of an upload killed mid-way (`kb/<name>/.upload-*/`) is
removed when the server comes back and before the next upload, on SQLite and on PostgreSQL; a live upload's
staging folder is never taken for a dead one; a refused file keeps its record and reason, not its bytes.

A real `zhiku serve` is SIGKILLed during a real streamed 100-file upload; real use-m3 embedder.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import ServeProcess, running
from zhiku.config import Settings
from zhiku.kb.staging import sweep_all_staging
from zhiku.server.app import create_app

API = "/api/kb"


def staging(home: Path, kb: str) -> list[Path]:
    return sorted((home / "kb" / kb).glob(".upload-*"))


def corpus(n: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    text = "\n\n".join(f"Paragraph {i}: the ferry timetable for the northern harbour, row {i}." for i in range(60))
    return [("files", (f"doc{i:03d}.txt", f"Document {i}.\n\n{text}".encode(), "text/plain")) for i in range(n)]


@pytest.fixture
def serve(tmp_path: Path, smollm_path: Path, database_url: str) -> Iterator[ServeProcess]:
    env = {"ZHIKU_EMBEDDER": "use-m3", "ZHIKU_PARALLEL": "1", "ZHIKU_CTX": "1024"}
    if database_url:
        env["ZHIKU_DATABASE_URL"] = database_url
    s = ServeProcess(tmp_path / "home", smollm_path, **env)
    try:
        yield s
    finally:
        s.kill()


def test_a_killed_upload_leaves_no_staging_copy_after_the_restart(serve: ServeProcess) -> None:
    base = serve.start()
    httpx.post(base + API, json={"name": "harbour"}, timeout=60).raise_for_status()
    with httpx.stream("POST", f"{base}{API}/harbour/documents", params={"stream": "true"}, files=corpus(100),
                      timeout=300) as r:
        assert r.status_code == 200
        for line in r.iter_lines():  # the files are staged before the first line: kill while it ingests
            if line and "document" in json.loads(line):
                serve.kill()
                break
    left = staging(serve.home, "harbour")
    assert left and any(p.is_file() for p in left[0].rglob("*")), "the kill came too late to leave a copy"
    base = serve.start()
    assert httpx.get(base + API, timeout=60).status_code == 200  # the knowledge-base service starts
    assert staging(serve.home, "harbour") == []


def test_a_stale_staging_folder_is_swept_before_the_next_upload(tmp_path: Path, database_url: str) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home, embedder="use-m3", ui=False, database_url=database_url)
    with running(create_app(settings, preload=False)) as base:
        httpx.post(base + API, json={"name": "harbour"}, timeout=60).raise_for_status()
        dead = home / "kb" / "harbour" / ".upload-dead"  # as a process killed mid-upload leaves it
        (dead / "0").mkdir(parents=True)
        (dead / "0" / "big.txt").write_bytes(b"x" * 100_000)
        r = httpx.post(f"{base}{API}/harbour/documents", files=corpus(1), timeout=300)
        assert r.status_code == 200 and r.json()[0]["status"] == "ok"
        assert staging(home, "harbour") == []


def test_a_live_staging_folder_is_kept(tmp_path: Path) -> None:
    """The start-up sweep takes only what no ingestion holds: an upload under way (its shared lock on
    .ingest.lock, as kb/documents.py holds it) keeps its folder."""
    folder = tmp_path / "kb" / "busy"
    live = folder / ".upload-live"
    live.mkdir(parents=True)
    with (folder / ".ingest.lock").open("a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        assert sweep_all_staging(tmp_path / "kb") == 0 and live.is_dir()
    assert sweep_all_staging(tmp_path / "kb") == 1 and not live.exists()


def test_a_refused_file_keeps_its_record_not_its_bytes(tmp_path: Path, database_url: str) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home, embedder="use-m3", ui=False, database_url=database_url,
                        max_chunks_per_document=5)
    runaway = "\n\n".join(f"Line {i} of a document far longer than this base accepts." for i in range(400))
    with running(create_app(settings, preload=False)) as base:
        httpx.post(base + API, json={"name": "harbour"}, timeout=60).raise_for_status()
        files = [("files", ("runaway.txt", runaway.encode(), "text/plain")),
                 ("files", ("fine.txt", b"The ferry leaves at noon.", "text/plain"))]
        r = httpx.post(f"{base}{API}/harbour/documents", files=files, timeout=300)
        docs = {d["path"]: d for d in r.json()}
        assert docs["runaway.txt"]["status"] == "failed" and "chunks" in docs["runaway.txt"]["error"]
        assert docs["fine.txt"]["status"] == "ok"
        kept = [p.name for p in (home / "kb" / "harbour" / "files").rglob("*") if p.is_file()]
        assert kept == ["fine.txt"]
        listed = httpx.get(f"{base}{API}/harbour/documents", timeout=60).json()
        assert {d["path"]: d["status"] for d in listed} == {"runaway.txt": "failed", "fine.txt": "ok"}
        gone = httpx.get(f"{base}{API}/harbour/documents/{docs['runaway.txt']['id']}/download", timeout=60)
        assert gone.status_code == 404 and "not kept" in gone.json()["error"]["message"]
        assert str(home) not in gone.json()["error"]["message"]
        if database_url:  # PostgreSQL keeps originals in the database: not this one
            import psycopg

            with psycopg.connect(database_url) as conn:
                names = [n for (n,) in conn.execute("SELECT name FROM original")]
            assert names == ["fine.txt"]
