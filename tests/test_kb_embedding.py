"""Two-phase ingestion: files searchable by full text at once, vectors from the queue in the database.

Real files, the real use-m3 embedder, real `zhiku` processes, a real PostgreSQL. "Embedded twice" is seen
by a trigger the test installs on the chunk table: it logs every committed write of a vector (a batch rolled
back by a kill logs nothing), so each chunk must appear in the log exactly once.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zhiku.config import Settings
from zhiku.kb.service import KBService

ZHIKU = [sys.executable, "-m", "zhiku"]
ANSWER = "The lighthouse keeper Quexlan Morrow lit the great lamp of Varnholt every evening at dusk."


def write_corpus(folder: Path, files: int, paragraphs: int = 6) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        text = "\n\n".join(f"Report {i}.{p}: the harbour of town {i} counted {p * 7 + i} boats, {i + p} nets and "
                           f"a tide of {p + 2} metres on day {p} of the season." for p in range(paragraphs))
        (folder / f"report{i:03d}.txt").write_text(text)
    (folder / "lighthouse.txt").write_text(ANSWER)


@pytest.fixture
def svc(home: Path, database_url: str) -> Iterator[KBService]:
    s = KBService(Settings(home=home, ui=False, embedder="use-m3", database_url=database_url))
    try:
        yield s
    finally:
        s.close()


def env_for(home: Path, database_url: str = "") -> dict[str, str]:
    return {**os.environ, "ZHIKU_HOME": str(home), "ZHIKU_EMBEDDER": "use-m3", "ZHIKU_DATABASE_URL": database_url,
            "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}


def zhiku_kb(home: Path, *args: str, database_url: str = "") -> subprocess.CompletedProcess[str]:
    out = subprocess.run([*ZHIKU, "kb", *args], env=env_for(home, database_url), capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def test_partly_embedded_search_keeps_bm25_hits_and_says_so(svc: KBService, tmp_path: Path) -> None:
    write_corpus(tmp_path / "docs", 3)
    svc.create("harbour", chunk_size=120, chunk_overlap=0)
    docs = svc.add_files("harbour", [tmp_path / "docs"], wait=False)
    assert {d.status for d in docs} == {"ok"}
    info = svc.get("harbour")
    assert info.embedded_chunks == 0 < info.chunks and info.embedding == f"embedding 0 / {info.chunks:,} chunks"
    assert svc.store.check(svc.store.get_kb("harbour"))["documents_incomplete"] == []  # queued is whole

    hits = svc.search("harbour", "Quexlan Morrow lighthouse", top_k=3)
    assert hits and hits[0].document == "lighthouse.txt"  # the BM25 hit, though no chunk has a vector yet
    partly = svc.partly_embedded("harbour")
    assert partly is not None and partly.embedded == 0 and partly.total == info.chunks
    assert svc.partly_embedded("harbour", mode="bm25") is None  # BM25 saw everything
    assert svc.search("harbour", "Quexlan Morrow lighthouse", mode="dense") == []

    assert svc.embedding.embed_batch(svc.store.get_kb("harbour"), size=5) == 5  # part of the base has vectors
    partly = svc.partly_embedded("harbour")
    assert partly is not None and 0 < partly.embedded < partly.total
    assert partly.eta_seconds is not None and "min left" in partly.text()  # a speed is measured now
    assert svc.search("harbour", "Quexlan Morrow lighthouse", top_k=3)[0].document == "lighthouse.txt"

    assert svc.wait_embedded("harbour") == info.chunks - partly.embedded
    assert svc.partly_embedded("harbour") is None and svc.get("harbour").embedding == "embedded"
    dense = svc.search("harbour", "who lit the lamp of the lighthouse at dusk?", top_k=1, mode="dense")
    assert dense[0].document == "lighthouse.txt"
    assert svc.store.check(svc.store.get_kb("harbour"))["documents_incomplete"] == []


def test_kb_add_wait_waits_and_default_returns_searchable(home: Path, tmp_path: Path) -> None:
    write_corpus(tmp_path / "docs", 2)
    zhiku_kb(home, "create", "w", "--chunk-size", "120", "--chunk-overlap", "0")
    zhiku_kb(home, "create", "bg", "--chunk-size", "120", "--chunk-overlap", "0")
    waited = zhiku_kb(home, "add", "w", str(tmp_path / "docs"), "--wait", "--quiet")
    background = zhiku_kb(home, "add", "bg", str(tmp_path / "docs"), "--quiet")
    with sqlite3.connect(home / "zhiku.db") as conn:
        counts = dict(conn.execute("SELECT k.name || ':' || (length(c.vector) > 0), count(*) FROM chunk c"
                                   " JOIN knowledge_base k ON k.id = c.kb_id GROUP BY 1").fetchall())
    total = counts["w:1"]
    assert total > 10 and "w:0" not in counts  # --wait: every vector is in when the command returns
    assert counts == {"w:1": total, "bg:0": total}  # default: searchable, every chunk queued
    assert "embedding" not in waited.stderr
    assert f"embedding 0 / {total:,} chunks" in background.stderr and "zhiku kb embed bg" in background.stderr
    hits = zhiku_kb(home, "search", "bg", "Quexlan Morrow")
    assert "lighthouse.txt" in hits.stdout and "embedding 0 /" in hits.stderr
    assert f"embedding 0 / {total:,} chunks" in zhiku_kb(home, "show", "bg").stdout
    assert f"{total:,} / {total:,} chunks embedded ({total:,} here)" in zhiku_kb(home, "embed", "bg").stdout
    assert "embedding: embedded" in zhiku_kb(home, "show", "bg").stdout


LOG_SQLITE = ("CREATE TABLE vector_writes (chunk_id INTEGER NOT NULL);"
              "CREATE TRIGGER log_vector_write AFTER UPDATE OF vector ON chunk WHEN length(new.vector) > 0"
              " BEGIN INSERT INTO vector_writes VALUES (new.id); END;")


def test_sigkill_during_background_embedding_resumes_without_repeats(home: Path, tmp_path: Path) -> None:
    write_corpus(tmp_path / "docs", 60, paragraphs=8)
    zhiku_kb(home, "create", "k", "--chunk-size", "120", "--chunk-overlap", "0")
    zhiku_kb(home, "add", "k", str(tmp_path / "docs"), "--quiet")
    db = home / "zhiku.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(LOG_SQLITE)
        total = conn.execute("SELECT count(*) FROM chunk").fetchone()[0]

    def written() -> list[int]:
        with sqlite3.connect(db, timeout=30) as conn:
            return [r[0] for r in conn.execute("SELECT chunk_id FROM vector_writes")]

    proc = subprocess.Popen([*ZHIKU, "kb", "embed", "k", "--quiet"], env=env_for(home),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while proc.poll() is None and not written() and time.monotonic() < deadline:
        time.sleep(0.05)  # until the first batch is committed
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = written()
    assert 0 < len(before) < total, f"the kill should land mid-way: {len(before)} of {total} written"

    restarted = zhiku_kb(home, "embed", "k", "--quiet")
    assert f"{total:,} / {total:,} chunks embedded ({total - len(before):,} here)" in restarted.stdout
    after = written()
    assert sorted(after) == sorted(set(after)), "a chunk was given a vector twice"
    with sqlite3.connect(db) as conn:
        ids = {r[0] for r in conn.execute("SELECT id FROM chunk")}
        dim = conn.execute("SELECT dim FROM knowledge_base").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM chunk WHERE length(vector) != ?", (dim * 4,)).fetchone()[0] == 0
    assert set(after) == ids  # none missed
    hits = zhiku_kb(home, "search", "k", "who lit the lamp at dusk?", "--mode", "dense", "--top-k", "1")
    assert "lighthouse.txt" in hits.stdout


LOG_PG = ("CREATE TABLE vector_writes (chunk_id BIGINT NOT NULL);"
          "CREATE FUNCTION log_vector_write() RETURNS trigger LANGUAGE plpgsql AS"
          " $$ BEGIN INSERT INTO vector_writes VALUES (NEW.id); RETURN NEW; END $$;"
          "CREATE TRIGGER log_vector_write AFTER UPDATE OF embedding ON chunk FOR EACH ROW"
          " WHEN (NEW.embedding IS NOT NULL) EXECUTE FUNCTION log_vector_write();")


def test_two_processes_share_the_postgres_queue(home: Path, tmp_path: Path, pg_url: str) -> None:
    """The test holds a row lock on the first half of the queue: both workers must skip it (SKIP LOCKED), not
    wait on it, and embed the other half; once it is released they finish it. Each chunk gets one vector."""
    import psycopg

    write_corpus(tmp_path / "docs", 30, paragraphs=8)
    zhiku_kb(home, "create", "pg", "--chunk-size", "120", "--chunk-overlap", "0", database_url=pg_url)
    zhiku_kb(home, "add", "pg", str(tmp_path / "docs"), "--quiet", database_url=pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(LOG_PG)
        ids = [r[0] for r in conn.execute("SELECT id FROM chunk ORDER BY id")]
    held = ids[:len(ids) // 2]
    with psycopg.connect(pg_url) as holder:
        holder.execute("SELECT id FROM chunk WHERE id = ANY(%s) FOR UPDATE", (held,))
        procs = [subprocess.Popen([*ZHIKU, "kb", "embed", "pg", "--quiet"], env=env_for(home, pg_url),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        with psycopg.connect(pg_url, autocommit=True) as watch:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and watch.execute(
                    "SELECT count(*) FROM vector_writes").fetchone()[0] < len(ids) - len(held):  # type: ignore[index]
                assert all(p.poll() is None for p in procs), "a worker stopped before the queue was empty"
                time.sleep(0.1)
            assert watch.execute("SELECT count(*) FROM chunk WHERE embedding IS NULL AND id = ANY(%s)",
                                 (held,)).fetchone()[0] == len(held)  # type: ignore[index]
        holder.rollback()  # release the held half
        outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    here = [int(o[0].rsplit("(", 1)[1].split()[0].replace(",", "")) for o in outs]
    assert sum(here) == len(ids), outs  # what each process says it embedded adds up to the queue
    with psycopg.connect(pg_url) as conn:
        written = [r[0] for r in conn.execute("SELECT chunk_id FROM vector_writes")]
        assert conn.execute("SELECT count(*) FROM chunk WHERE embedding IS NULL").fetchone()[0] == 0  # type: ignore[index]
    assert sorted(written) == sorted(ids), "each chunk embedded exactly once"


def test_http_upload_answers_searchable_then_streams_both_phases(home: Path) -> None:
    """The test holds the SQLite embedding lock (what a busy embedding process holds), so the server's worker
    cannot start: the base stays partly embedded for as long as the test looks at it."""
    import fcntl
    import json

    import httpx

    from conftest import running
    from zhiku.server.app import create_app

    app = create_app(Settings(home=home, embedder="use-m3", ui=False), preload=False)
    with running(app) as base, httpx.Client(base_url=base, timeout=300) as c:
        assert c.post("/api/kb", json={"name": "h", "chunk_size": 120, "chunk_overlap": 0}).status_code == 201
        reports = [("files", (f"r{i}.txt", f"Harbour report {i}: {i * 3} boats and {i} nets.".encode() * 8,
                              "text/plain")) for i in range(4)]
        with (home / "zhiku.db.embed.lock").open("a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            r = c.post("/api/kb/h/documents", files=[*reports, ("files", ("light.txt", ANSWER.encode(), "text/plain"))])
            assert r.status_code == 200 and {d["status"] for d in r.json()} == {"ok"}
            info = c.get("/api/kb/h").json()
            assert info["embedded_chunks"] == 0 < info["chunks"]
            assert info["embedding"] == f"embedding 0 / {info['chunks']:,} chunks"
            found = c.post("/api/kb/h/search", json={"query": "Quexlan Morrow", "top_k": 1})
            assert found.json()[0]["document"] == "light.txt"
            assert found.headers["x-zhiku-embedding"] == info["embedding"]
            assert "x-zhiku-embedding" not in c.post("/api/kb/h/search", json={"query": "Quexlan", "mode": "bm25"}).headers
        # Released: a streamed upload with wait tells the phases apart and ends with every vector in.
        more = [("files", ("late.txt", b"A late report on the tides of Varnholt harbour." * 5, "text/plain"))]
        with c.stream("POST", "/api/kb/h/documents", params={"stream": True, "wait": True}, files=more) as s:
            events = [json.loads(line) for line in s.iter_lines() if line.strip()]
        kinds = [e.get("what") or e.get("phase") or ("document" if "document" in e else "done" if "done" in e
                                                     else e.get("error")) for e in events]
        assert kinds.index("document") < kinds.index("searchable") < kinds.index("embedded") < kinds.index("done")
        last = [e for e in events if e.get("what") == "embedded"][-1]
        assert last["done"] == last["total"] == c.get("/api/kb/h").json()["chunks"]
        assert c.get("/api/kb/h").json()["embedding"] == "embedded"
        assert "x-zhiku-embedding" not in c.post("/api/kb/h/search", json={"query": "Quexlan"}).headers


def _rows(svc: KBService, table: str, kb_id: int) -> int:
    """Rows of `table` that belong to one knowledge base, on either store."""
    from zhiku.kb.stores.sqlite.store import SQLiteStore

    if isinstance(svc.store, SQLiteStore):
        return int(svc.store.conn.execute(f"SELECT count(*) FROM {table} WHERE kb_id = ?", (kb_id,)).fetchone()[0])
    with svc.store._conn() as conn:  # type: ignore[attr-defined]
        return int(conn.execute(f"SELECT count(*) FROM {table} WHERE kb_id = %s", (kb_id,)).fetchone()[0])


def _count_embedded(svc: KBService, embedder: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every passage `embedder` (the process's one instance, whichever service asks) embeds from now
    on, until the test ends."""
    emb = svc.ctx.embedder(embedder)
    calls: list[int] = []
    inner = emb.embed_passages

    def counted(texts: list[str]) -> Any:
        calls.append(len(texts))
        return inner(texts)

    monkeypatch.setattr(emb, "embed_passages", counted)
    return calls


def test_rebuild_goes_through_the_queue_switches_at_once_and_resumes(home: Path, tmp_path: Path, database_url: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """While a rebuild to another embedder is under way the base answers with its old vectors (dense search
    too); a restart resumes it without embedding anything twice; chunks added meanwhile get new vectors
    before the switch; the switch is one step (new embedder, dimension and epoch together)."""
    write_corpus(tmp_path / "docs", 2, paragraphs=4)
    settings = Settings(home=home, ui=False, embedder="use-m3", database_url=database_url)
    svc = KBService(settings)
    svc.create("rb", chunk_size=120, chunk_overlap=0)
    svc.add_files("rb", [tmp_path / "docs"], wait=True)
    before = svc.store.get_kb("rb")
    total = svc.get("rb").chunks
    question = "who lit the lamp of the lighthouse at dusk?"
    assert svc.search("rb", question, top_k=1, mode="dense")[0].document == "lighthouse.txt"

    embedded = _count_embedded(svc, "e5-small", monkeypatch)
    svc.rebuild("rb", embedder="e5-small", wait=False)
    info = svc.get("rb")
    assert (info.embedder, info.dim, info.rebuilding, info.rebuilt_chunks) == ("use-m3", 512, "e5-small", 0)
    assert info.embedding == f"rebuilding with e5-small: 0 / {total:,} chunks"
    assert svc.embedding.embed_batch(svc.store.get_kb("rb"), size=4) == 4
    assert svc.get("rb").rebuilt_chunks == 4 and svc.store.get_kb("rb").embedder == "use-m3"
    assert svc.search("rb", question, top_k=1, mode="dense")[0].document == "lighthouse.txt"  # old vectors
    assert svc.partly_embedded("rb") is None  # dense search saw every chunk (with the old embedder)
    svc.close()

    # "Restart": another service (another process) finds the rebuild where it stopped.
    again = KBService(settings)
    (tmp_path / "late").mkdir()
    (tmp_path / "late" / "late.txt").write_text("A late report: the ferry of Varnholt was painted green in spring.")
    again.add_files("rb", [tmp_path / "late"], wait=False)  # arrives during the rebuild
    assert again.get("rb").rebuilding == "e5-small" and again.get("rb").rebuilt_chunks == 4
    again.rebuild("rb", embedder="e5-small")  # the same target: resumes (and waits for the switch here)
    kb = again.store.get_kb("rb")
    assert (kb.embedder, kb.dim, kb.vector_epoch) == ("e5-small", 384, before.vector_epoch + 1)
    assert sum(embedded) == total + 1, "every chunk embedded once for the rebuild, none twice"
    info = again.get("rb")
    assert info.rebuilding is None and info.embedded_chunks == info.chunks == total + 1
    assert again.store.check(kb)["documents_incomplete"] == []  # every vector 384-d now
    assert _rows(again, "rebuild_vector", kb.id) == 0 and _rows(again, "rebuild", kb.id) == 0
    assert again.search("rb", question, top_k=1, mode="dense")[0].document == "lighthouse.txt"
    assert again.search("rb", "ferry painted green", top_k=1, mode="dense")[0].document == "late.txt"
    again.close()


def test_a_search_that_straddles_the_switch_runs_again_on_the_new_vectors(svc: KBService, tmp_path: Path) -> None:
    """The switch lands between a search's query embedding (old embedder) and its vector search: the search
    must not mix them (nor fail): it sees the new epoch and runs again, all new."""
    write_corpus(tmp_path / "docs", 2, paragraphs=4)
    svc.create("sw", chunk_size=120, chunk_overlap=0)
    svc.add_files("sw", [tmp_path / "docs"], wait=True)
    kb = svc.store.get_kb("sw")
    svc.store.rebuilds.start(kb, "e5-small", 384)
    emb = svc.ctx.embedder("e5-small")
    while True:  # every new vector staged, the switch not made
        with svc.store.rebuilds.claim(kb, 64) as batch:
            if batch is None:
                break
            batch.save(emb.embed_passages(batch.texts))
    dense = svc.searcher.dense
    switched: list[bool] = []

    def switch_first(kb_: Any, qvec: Any, k: int, docs: Any) -> Any:
        if not switched:
            switched.append(svc.store.rebuilds.finish(kb_))
        return dense(kb_, qvec, k, docs)

    svc.searcher.dense = switch_first  # type: ignore[method-assign]
    hits = svc.search("sw", "who lit the lamp of the lighthouse at dusk?", top_k=1, mode="dense")
    assert switched == [True] and svc.store.get_kb("sw").embedder == "e5-small"
    assert hits and hits[0].document == "lighthouse.txt"


def test_temporary_bases_are_embedded_and_expiry_leaves_no_queue(home: Path, database_url: str) -> None:
    """The worker serves file chat's temporary bases like any other; an expired one is passed over, and its
    expiry removes its queued chunks, its speed and a rebuild's new vectors with it."""
    svc = KBService(Settings(home=home, ui=False, embedder="use-m3", database_url=database_url))
    try:
        svc.create("file-chat-live", ttl_seconds=600)
        svc.add_bytes("file-chat-live", "notes.txt", ((ANSWER + "\n\n") * 20).encode(), wait=False)
        svc.create("file-chat-gone", ttl_seconds=3, chunk_size=120, chunk_overlap=0)
        svc.add_bytes("file-chat-gone", "old.txt", ("Harbour report of the old season. " * 40).encode(), wait=False)
        gone = svc.store.get_kb("file-chat-gone")
        svc.embedding.embed_batch(gone, size=2)  # some vectors, a measured speed
        svc.rebuild("file-chat-gone", wait=False)
        svc.embedding.embed_batch(gone, size=2)  # and a rebuild under way with new vectors staged
        assert _rows(svc, "rebuild_vector", gone.id) == 2 and _rows(svc, "embed_rate", gone.id) == 1
        while time.time() < (gone.expires_at or 0) + 0.1:
            time.sleep(0.1)
        waiting = svc.store.waiting_count(gone)
        assert waiting > 0 and svc.embedding.run_once() > 0  # the live base is served ...
        assert svc.store.waiting_count(gone) == waiting and _rows(svc, "rebuild_vector", gone.id) == 2  # not this
        svc.embedding.start()
        deadline = time.monotonic() + 120
        while not svc.embedding.status("file-chat-live").settled:
            assert time.monotonic() < deadline, "the worker did not embed the temporary base"
            time.sleep(0.1)
        assert svc.expire_temporary() == ["file-chat-gone"]
        for table in ("chunk", "embed_rate", "rebuild", "rebuild_vector"):
            assert _rows(svc, table, gone.id) == 0, table
    finally:
        svc.close()


LOG_REBUILD = ("CREATE TABLE rebuild_writes (chunk_id INTEGER NOT NULL);"
               "CREATE TRIGGER log_rebuild_write AFTER INSERT ON rebuild_vector"
               " BEGIN INSERT INTO rebuild_writes VALUES (new.chunk_id); END;")


def test_sigkill_during_a_rebuild_resumes_where_it_stopped(home: Path, tmp_path: Path) -> None:
    """`kb rebuild --embedder` killed mid-way: the base still answers with its old embedder; run again, it
    goes on from the new vectors already stored (none embedded twice) and switches once all are in."""
    write_corpus(tmp_path / "docs", 60, paragraphs=8)
    zhiku_kb(home, "create", "k", "--chunk-size", "120", "--chunk-overlap", "0", "--embedder", "e5-small")
    zhiku_kb(home, "add", "k", str(tmp_path / "docs"), "--quiet")  # queued for e5-small, never embedded
    db = home / "zhiku.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(LOG_REBUILD)
        total = conn.execute("SELECT count(*) FROM chunk").fetchone()[0]

    def written() -> list[int]:
        with sqlite3.connect(db, timeout=30) as conn:
            return [r[0] for r in conn.execute("SELECT chunk_id FROM rebuild_writes")]

    proc = subprocess.Popen([*ZHIKU, "kb", "rebuild", "k", "--embedder", "use-m3", "--quiet"], env=env_for(home),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while proc.poll() is None and not written() and time.monotonic() < deadline:
        time.sleep(0.05)  # until the first batch of new vectors is committed
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = written()
    assert 0 < len(before) < total, f"the kill should land mid-way: {len(before)} of {total} written"
    shown = zhiku_kb(home, "show", "k").stdout
    assert "embedder: e5-small" in shown and f"rebuilding with use-m3: {len(before):,} / {total:,} chunks" in shown
    assert "lighthouse.txt" in zhiku_kb(home, "search", "k", "Quexlan Morrow", "--mode", "bm25").stdout

    out = zhiku_kb(home, "rebuild", "k", "--embedder", "use-m3", "--quiet")
    assert f"rebuilt k: {total} chunks with use-m3" in out.stdout
    after = written()
    assert sorted(after) == sorted(set(after)), "a chunk was given a new vector twice"
    with sqlite3.connect(db) as conn:
        assert set(after) == {r[0] for r in conn.execute("SELECT id FROM chunk")}  # none missed
        assert conn.execute("SELECT embedder, dim FROM knowledge_base").fetchone() == ("use-m3", 512)
        assert conn.execute("SELECT count(*) FROM chunk WHERE length(vector) != 2048").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM rebuild_vector").fetchone()[0] == 0
    hits = zhiku_kb(home, "search", "k", "who lit the lamp at dusk?", "--mode", "dense", "--top-k", "1")
    assert "lighthouse.txt" in hits.stdout
