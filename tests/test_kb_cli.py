"""`zhiku kb ...` as a user runs it (subprocesses), including SIGKILL at random moments during `kb add`."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ZHIKU = [sys.executable, "-m", "zhiku"]


def run(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ZHIKU_HOME": str(home), "ZHIKU_EMBEDDER": "use-m3", "COLUMNS": "200"}
    out = subprocess.run([*ZHIKU, "kb", *args], env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_cli_round_trip(home: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "eiffel.md").write_text("# Paris\n\nThe Eiffel Tower was completed in 1889 for the World's Fair.\n")
    (docs / "tea.txt").write_text("龙井茶产于浙江省杭州市西湖一带。", encoding="utf-8")
    run(home, "create", "cli-kb", "--chunk-size", "200", "--chunk-overlap", "20")
    added = run(home, "add", "cli-kb", str(docs / "eiffel.md"), str(docs / "tea.txt"))
    assert "eiffel.md: ok" in added.stdout and "tea.txt: ok" in added.stdout
    hits = json.loads(run(home, "search", "cli-kb", "西湖的茶", "--top-k", "2", "--json").stdout)
    assert hits[0]["document"] == "tea.txt" and set(hits[0]) >= {"score", "text", "document", "page", "heading"}
    en = json.loads(run(home, "search", "cli-kb", "Eiffel Tower", "--json", "--mode", "bm25").stdout)
    # 0 <= score: in a two-chunk base FTS5's BM25 gives a word found in half the chunks an IDF of ~0.
    assert len(en) == 1 and en[0]["heading"] == ["Paris"] and 0 <= en[0]["score"] <= 1
    assert "tea.txt" in run(home, "show", "cli-kb").stdout
    assert "removed tea.txt" in run(home, "rm-doc", "cli-kb", "tea.txt").stdout
    synced = run(home, "sync", "cli-kb", str(docs), "--quiet").stdout
    assert "added: 1" in synced and "unchanged: 1" in synced
    run(home, "delete", "cli-kb", "--yes")
    for args, message in ((["create", "../x"], "path separator"), (["search", "nope", "q"], "not found")):
        out = run(home, *args, check=False)
        assert out.returncode == 1 and message in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def _documents(db: Path) -> int:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return int(conn.execute("SELECT count(*) FROM document").fetchone()[0])
    finally:
        conn.close()


def _state(db: Path) -> tuple[int, list[str]]:
    """(committed documents, problems): every document must be whole (chunks, vectors, fts rows)."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kb_id, dim = conn.execute("SELECT id, dim FROM knowledge_base WHERE name = 'crash'").fetchone()
        conn.execute(f"INSERT INTO chunk_fts_{kb_id}(chunk_fts_{kb_id}) VALUES ('integrity-check')")
        problems = []
        docs = conn.execute("SELECT id, path, chunk_count FROM document WHERE kb_id = ?", (kb_id,)).fetchall()
        for doc_id, path, expected in docs:
            n, nvec = conn.execute("SELECT count(*), coalesce(sum(length(vector) = ?), 0) FROM chunk"
                                   " WHERE document_id = ?", (dim * 4, doc_id)).fetchone()
            nfts = conn.execute(f"SELECT count(*) FROM chunk_fts_{kb_id} WHERE rowid IN"
                                " (SELECT id FROM chunk WHERE document_id = ?)", (doc_id,)).fetchone()[0]
            if expected == 0 or not n == nvec == nfts == expected:
                problems.append(f"{path}: expected {expected}, chunks {n}, vectors {nvec}, fts {nfts}")
        orphans = conn.execute(f"SELECT count(*) FROM chunk_fts_{kb_id} WHERE rowid NOT IN"
                               " (SELECT id FROM chunk)").fetchone()[0]
        orphan_chunks = conn.execute("SELECT count(*) FROM chunk WHERE document_id NOT IN"
                                     " (SELECT id FROM document)").fetchone()[0]
        if orphans or orphan_chunks:
            problems.append(f"{orphans} orphan fts rows, {orphan_chunks} orphan chunks")
        return len(docs), problems
    finally:
        conn.close()


@pytest.mark.slow
def test_sigkill_during_add_leaves_every_document_whole_or_absent(home: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    rng = random.Random(20261124)
    words = ("knowledge base crash safety sqlite transaction vector index chunk embedding search"
             " durable atomic commit rollback journal").split()
    for i in range(30):
        paragraphs = ["".join(rng.choice(words) + " " for _ in range(90)) for _ in range(4)]
        (docs / f"doc{i:02d}.txt").write_text("\n\n".join(paragraphs))
    run(home, "create", "crash", "--chunk-size", "200", "--chunk-overlap", "20")
    db = home / "zhiku.db"
    env = {**os.environ, "ZHIKU_HOME": str(home), "ZHIKU_EMBEDDER": "use-m3"}
    killed_mid_add = 0
    for trial in range(4):
        before, _ = _state(db)
        proc = subprocess.Popen([*ZHIKU, "kb", "add", "crash", str(docs), "--quiet", "--wait"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Wait until this run has committed something, then kill after a random extra moment.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and _documents(db) <= before:
            time.sleep(0.05)
        # Files commit one by one in quick succession, so the extra moment stays short.
        time.sleep(rng.uniform(0.0, 0.25))
        if proc.poll() is None:
            killed_mid_add += 1
        proc.kill()  # SIGKILL; a no-op if the run has just finished on its own
        proc.wait()
        committed, problems = _state(db)
        assert not problems, f"trial {trial}: {problems}"
        assert committed >= before
    assert killed_mid_add >= 2, "the kills should land while ingestion is running"
    finished = run(home, "add", "crash", str(docs), "--quiet", "--wait")
    # Files committed before a kill are reported unchanged, the rest ok.
    assert finished.stdout.count(": ok,") + finished.stdout.count(": unchanged,") == 30
    committed, problems = _state(db)
    assert committed == 30 and not problems
    hits = json.loads(run(home, "search", "crash", "atomic journal", "--json").stdout)
    assert hits and hits[0]["document"].startswith("doc")
