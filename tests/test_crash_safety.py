"""Crash safety: SIGKILL real zhiku processes mid-ingestion and mid-answer, then check nothing is half-kept.

After every kill: PRAGMA integrity_check and foreign_key_check pass, each FTS index passes its own
integrity check, every document is whole (chunks = vectors = FTS rows = chunk_count, ordinals 0..n-1,
original on disk) or absent, no orphan chunks or FTS rows; conversations keep every completed message.
The knowledge-base engineer's smaller kill test (tests/test_kb_cli.py) covers a plain-text corpus; this
one mixes formats and failing files, kills at any moment (start-up included), and kills the server too.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docx
import httpx
import pytest
from fpdf import FPDF

from conftest import ServeProcess
from zhiku.config import Settings
from zhiku.kb.ingest import original_path
from zhiku.kb.service import KBService

pytestmark = pytest.mark.slow
SEED = int(os.environ.get("ZHIKU_CRASH_SEED", "20261124"))
KB = "crash"
WORDS = ("harbour tide pilot ledger lighthouse storm anchor cargo manifest beacon channel buoy"
         " 港口 潮汐 引航 灯塔 风暴 锚地 货物 航道 浮标 事务 索引").split()


def zhiku(*args: str) -> list[str]:
    return [sys.executable, "-m", "zhiku", *args]


def env_for(home: Path, model: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "ZHIKU_HOME": str(home), "ZHIKU_EMBEDDER": "use-m3", "ZHIKU_UI": "false"}
    if model is not None:
        env["ZHIKU_MODEL"] = str(model)
    return env


def write_corpus(folder: Path, rng: random.Random, n_text: int = 30) -> None:
    """Plain text in bulk, plus real .docx and .pdf files and two that must fail."""
    folder.mkdir(parents=True)
    for i in range(n_text):
        paragraphs = [" ".join(rng.choice(WORDS) for _ in range(80)) for _ in range(5)]
        (folder / f"log{i:02d}.txt").write_text(f"Log {i}\n\n" + "\n\n".join(paragraphs), encoding="utf-8")
    for i in range(2):
        d = docx.Document()
        d.add_heading(f"Manifest {i}", level=1)
        for _ in range(4):
            d.add_paragraph(" ".join(rng.choice(WORDS) for _ in range(60)))
        d.save(str(folder / f"manifest{i}.docx"))
        pdf = FPDF()
        pdf.set_font("helvetica", size=11)
        pdf.add_page()
        pdf.multi_cell(0, 6, " ".join(rng.choice(WORDS[:12]) for _ in range(300)))
        (folder / f"chart{i}.pdf").write_bytes(bytes(pdf.output()))
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n" + rng.randbytes(4000))
    (folder / "empty.txt").write_bytes(b"")


# --- the store checker ------------------------------------------------------------------------------


def check_store(home: Path) -> tuple[dict[str, str], list[str]]:
    """({document path: status}, problems) over every knowledge base in ZHIKU_HOME."""
    conn = sqlite3.connect(home / "zhiku.db")
    problems: list[str] = []
    docs: dict[str, str] = {}
    try:
        if (r := conn.execute("PRAGMA integrity_check").fetchone()[0]) != "ok":
            return docs, [f"integrity_check: {r}"]
        problems += [f"foreign key: {tuple(row)}" for row in conn.execute("PRAGMA foreign_key_check")]
        for kb_id, name, dim in conn.execute("SELECT id, name, dim FROM knowledge_base").fetchall():
            fts = f"chunk_fts_{kb_id}"
            try:
                conn.execute(f"INSERT INTO {fts}({fts}) VALUES ('integrity-check')")
            except sqlite3.DatabaseError as e:
                problems.append(f"{fts}: {e}")
            files_dir = home / "kb" / name / "files"
            rows = conn.execute("SELECT id, path, sha256, status, error, chunk_count FROM document"
                                " WHERE kb_id = ?", (kb_id,)).fetchall()
            for doc_id, path, sha, status, error, expected in rows:
                docs[path] = status
                ordinals = [o for (o,) in conn.execute(
                    "SELECT ordinal FROM chunk WHERE document_id = ? ORDER BY ordinal", (doc_id,))]
                nvec = conn.execute("SELECT count(*) FROM chunk WHERE document_id = ? AND length(vector) = ?",
                                    (doc_id, dim * 4)).fetchone()[0]
                nfts = conn.execute(f"SELECT count(*) FROM {fts} WHERE rowid IN"
                                    " (SELECT id FROM chunk WHERE document_id = ?)", (doc_id,)).fetchone()[0]
                n = len(ordinals)
                if status == "failed":
                    if n or not error:
                        problems.append(f"{path}: failed with {n} chunks, error {error!r}")
                elif not (expected >= 1 and n == nvec == nfts == expected and ordinals == list(range(n))):
                    problems.append(f"{path}: chunk_count {expected}, chunks {n}, vectors {nvec}, fts {nfts}")
                if status != "failed" and not original_path(files_dir, sha, path).is_file():
                    problems.append(f"{path}: original file missing")  # (a failed file's is not kept)
            orphan_fts = conn.execute(f"SELECT count(*) FROM {fts} WHERE rowid NOT IN"
                                      " (SELECT id FROM chunk WHERE kb_id = ?)", (kb_id,)).fetchone()[0]
            if orphan_fts:
                problems.append(f"{name}: {orphan_fts} orphan FTS rows")
        orphans = conn.execute("SELECT count(*) FROM chunk WHERE document_id NOT IN (SELECT id FROM document)"
                               " OR kb_id != (SELECT kb_id FROM document WHERE id = chunk.document_id)").fetchone()[0]
        if orphans:
            problems.append(f"{orphans} orphan or misfiled chunks")
    finally:
        conn.close()
    return docs, problems


def committed(home: Path) -> int:
    with sqlite3.connect(home / "zhiku.db") as conn:
        return int(conn.execute("SELECT count(*) FROM document").fetchone()[0])


# --- SIGKILL during `zhiku kb add` -------------------------------------------------------------------


@pytest.fixture
def corpus_home(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    home, docs = tmp_path / "home", tmp_path / "docs"
    home.mkdir()
    write_corpus(docs, random.Random(SEED))
    subprocess.run(zhiku("kb", "create", KB, "--chunk-size", "200", "--chunk-overlap", "20"),
                   env=env_for(home), check=True, capture_output=True, timeout=120)
    yield home, docs


def test_sigkill_during_kb_add_at_random_moments(corpus_home: tuple[Path, Path]) -> None:
    home, docs = corpus_home
    rng = random.Random(SEED)
    total = len(list(docs.iterdir()))
    landed_mid_ingest = 0
    for trial in range(10):
        before = committed(home)
        started = time.monotonic()
        proc = subprocess.Popen(zhiku("kb", "add", KB, str(docs), "--quiet", "--wait"), env=env_for(home),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if trial % 4 == 3:
            time.sleep(rng.uniform(0.1, 2.5))  # anywhere, start-up included
        else:  # mid-ingestion: once this run has committed a random number of further documents, plus a
            # random few ms (a fixed sleep after the first commit landed after the end on a fast, warm machine)
            target = before + rng.randint(1, max(1, (total - before) // 3))
            while proc.poll() is None and committed(home) < target and time.monotonic() - started < 60:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.05))
        alive = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        docs_now, problems = check_store(home)
        assert not problems, f"trial {trial} (seed {SEED}): {problems}"
        assert len(docs_now) >= before, "a committed document disappeared"
        landed_mid_ingest += alive and before < len(docs_now) < total
    assert landed_mid_ingest >= 5, "most kills should land while documents are being ingested"

    # Restart and finish: everything ingests once, the failing files fail with a reason, search works.
    stray = len(list((home / "kb" / KB / "files").glob("*/*"))) - committed(home)  # originals never committed
    done = subprocess.run(zhiku("kb", "add", KB, str(docs), "--quiet", "--wait"), env=env_for(home),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    docs_now, problems = check_store(home)
    assert not problems and len(docs_now) == total
    assert docs_now["broken.pdf"] == docs_now["empty.txt"] == "failed"
    # Originals copied by killed runs but never committed were swept: one file per document, no orphans.
    # (A failed file keeps its record, not its original.)
    with sqlite3.connect(home / "zhiku.db") as conn:
        referenced = {(sha, Path(p).name) for sha, p in conn.execute("SELECT sha256, path FROM document"
                                                                    " WHERE status != 'failed'")}
    kept = {(f.parent.name, f.name) for f in (home / "kb" / KB / "files").glob("*/*")}
    assert kept == referenced, f"{stray} stray originals before the final add"
    assert sum(s in ("ok", "warning") for s in docs_now.values()) == total - 2
    out = subprocess.run(zhiku("kb", "search", KB, "lighthouse beacon", "--json"), env=env_for(home),
                         capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout), out.stderr[-2000:]


# --- SIGKILL of `zhiku serve` during an upload and during a streamed answer -------------------------


@pytest.fixture
def serve(tmp_path: Path, smollm_path: Path) -> Iterator[ServeProcess]:
    s = ServeProcess(tmp_path / "home", smollm_path, ZHIKU_EMBEDDER="use-m3", ZHIKU_PARALLEL="1", ZHIKU_CTX="1024",
                     ZHIKU_THREADS="2")
    try:
        yield s
    finally:
        s.kill()


def upload_in_background(base: str, files: list[tuple[str, bytes]]) -> threading.Thread:
    def post() -> None:
        try:
            httpx.post(base + f"/api/kb/{KB}/documents", timeout=120, params={"wait": True},  # one phase
                       files=[("files", (n, data, "application/octet-stream")) for n, data in files])
        except httpx.TransportError:
            pass  # the server is killed under it: that is the point

    t = threading.Thread(target=post, daemon=True)
    t.start()
    return t


def stream_chat(base: str, body: dict[str, object], on_delta: object = None) -> dict[str, object]:
    """Send one streamed /api/chat request; return the done event's data (or {} if cut off)."""
    done: dict[str, object] = {}
    with httpx.stream("POST", base + "/api/chat", json=body, timeout=120) as r:
        assert r.status_code == 200, r.read()[:300]
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event["type"] == "delta" and callable(on_delta):
                on_delta()
            elif event["type"] == "done":
                done = event
            elif event["type"] == "error":
                raise AssertionError(event)
    return done


def conversation_rows(home: Path, conversation_id: str) -> list[tuple[str, str]]:
    with sqlite3.connect(home / "zhiku.db") as conn:
        return [(r, c) for r, c in conn.execute(
            "SELECT role, content FROM message WHERE conversation_id = ? ORDER BY seq", (conversation_id,))]


def test_sigkill_of_the_server_mid_upload_and_mid_answer(serve: ServeProcess, tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    write_corpus(tmp_path / "docs", rng, n_text=16)
    files = [(p.name, p.read_bytes()) for p in sorted((tmp_path / "docs").iterdir())]

    # Two kills while an upload is being ingested.
    base = serve.start()
    httpx.post(base + "/api/kb", json={"name": KB, "chunk_size": 200, "chunk_overlap": 20},
               timeout=60).raise_for_status()
    for trial in range(2):
        before = committed(serve.home)
        upload_in_background(base, files)
        deadline = time.monotonic() + 60
        while committed(serve.home) <= before and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.5))
        serve.kill()
        docs_now, problems = check_store(serve.home)
        assert not problems, f"upload trial {trial}: {problems}"
        base = serve.start()

    # Two completed turns, then a kill in the middle of the third answer's stream.
    ask = {"mode": "llm", "max_tokens": 12, "temperature": 0.0, "stream": True}
    first = stream_chat(base, {**ask, "query": "Name a harbour."})
    cid = str(first["conversation_id"])
    stream_chat(base, {**ask, "query": "Name a ship.", "conversation_id": cid})
    completed = conversation_rows(serve.home, cid)
    assert [r for r, _ in completed] == ["user", "assistant"] * 2

    deltas = 0

    def kill_mid_stream() -> None:
        nonlocal deltas
        deltas += 1
        if deltas == 3:
            serve.kill()

    with pytest.raises(httpx.TransportError):
        stream_chat(base, {**ask, "query": "Tell a long story about the sea.", "max_tokens": 200,
                           "conversation_id": cid}, on_delta=kill_mid_stream)
    assert deltas >= 3
    after = conversation_rows(serve.home, cid)
    assert after[:4] == completed, "a completed message was lost"
    assert after[4:] in ([], [("user", "Tell a long story about the sea.")]), "a half answer was kept"
    _, problems = check_store(serve.home)
    assert not problems

    # Restarted, the conversation reads back whole and goes on.
    base = serve.start()
    convo = httpx.get(f"{base}/api/conversations/{cid}", timeout=30).json()
    contents = [m["content"] for m in convo["messages"]]
    assert contents[:4] == [c for _, c in completed]
    stream_chat(base, {**ask, "query": "And a port?", "conversation_id": cid})
    assert conversation_rows(serve.home, cid)[-1][0] == "assistant"
    # The interrupted upload can simply be sent again: all of it ends up whole.
    r = httpx.post(base + f"/api/kb/{KB}/documents", timeout=300, params={"wait": True},
                   files=[("files", (n, data, "application/octet-stream")) for n, data in files])
    assert r.status_code == 200
    docs_now, problems = check_store(serve.home)
    assert not problems and len(docs_now) == len(files)


def test_checker_catches_a_half_written_document(corpus_home: tuple[Path, Path]) -> None:
    # The checker itself must be able to fail: damage a store by hand and expect it to be reported.
    home, docs = corpus_home
    kb = KBService(Settings(home=home, embedder="use-m3", ui=False))
    try:
        kb.add_files(KB, [docs / "log00.txt", docs / "log01.txt"])
    finally:
        kb.close()
    assert check_store(home)[1] == []
    with sqlite3.connect(home / "zhiku.db") as conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        doc_id = conn.execute("SELECT id FROM document WHERE path = 'log00.txt'").fetchone()[0]
        conn.execute("DELETE FROM chunk WHERE id = (SELECT max(id) FROM chunk WHERE document_id = ?)", (doc_id,))
        conn.execute("DELETE FROM document WHERE path = 'log01.txt'")
    problems = check_store(home)[1]
    assert any("log00.txt" in p for p in problems) and any("orphan" in p for p in problems), problems

