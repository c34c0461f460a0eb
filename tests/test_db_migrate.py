"""`zhiku db migrate --to postgresql://...` on a real home (two knowledge bases of real files embedded with
use-m3, conversations with feedback) into a real PostgreSQL: interrupted, resumed, counts verified, and the
migrated bases answer searches as the SQLite ones do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from zhiku.chat.history import HistoryStore
from zhiku.config import Settings
from zhiku.kb.service import KBService
from zhiku.migrate import migrate

PARAS = [
    "The Eiffel Tower in Paris was completed in 1889 for the World's Fair.",
    "Emperor penguins breed during the Antarctic winter; the male keeps the egg warm.",
    "Mount Vesuvius erupted in the year 79 and buried Pompeii in ash.",
    "长城是中国古代的军事防御工程，全长约两万一千公里。",
    "龙井茶产于浙江省杭州市西湖一带，是中国十大名茶之一。",
    "The Great Barrier Reef is the world's largest coral reef system, off Queensland.",
]


def _home(home: Path, tmp_path: Path) -> Settings:
    settings = Settings(home=home, embedder="use-m3", ui=False, embed_threads=2)
    svc = KBService(settings)
    for name, n in (("first", 12), ("second", 8)):
        folder = tmp_path / name
        (folder / "sub").mkdir(parents=True)
        for i in range(n):
            sub = "sub/" if i % 3 == 0 else ""
            (folder / f"{sub}doc{i:02d}.md").write_text(f"# Note {i}\n\n{PARAS[i % len(PARAS)]} Number {i}.\n",
                                                        encoding="utf-8")
        svc.create(name)
        svc.add_files(name, [folder])
    svc.close()
    history = HistoryStore(settings.db_path)
    for c in range(3):
        cid = history.ensure_conversation(None, "kb", f"question {c}")
        history.add_message(cid, "user", f"question {c}", "kb")
        mid = history.add_message(cid, "assistant", f"answer {c} [1]", "kb", sources=[{"index": 1, "document": "a"}])
        history.add_feedback(mid, 1 if c % 2 else -1, "ok")
    history.close()
    return settings


def test_migrate_interrupted_and_resumed(home: Path, tmp_path: Path, pg_url: str) -> None:
    settings = _home(home, tmp_path)
    seen: list[int] = []

    def interrupt(what: str, done: int, total: int) -> None:
        seen.append(done)
        if what == "documents" and done == 7:  # in the middle of the first knowledge base
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        migrate(settings.home, settings.db_path, pg_url, interrupt)
    partial = KBService(Settings(home=tmp_path / "other-home", embedder="use-m3", ui=False, database_url=pg_url))
    assert partial.get("first").documents == 7
    partial.close()

    # The real command resumes: the 7 copied documents are skipped, the rest copied, counts verified.
    env = {**os.environ, "ZHIKU_HOME": str(home)}
    out = subprocess.run([sys.executable, "-m", "zhiku", "db", "migrate", "--to", pg_url, "--quiet"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "copied 13 documents (7 already there), 3 conversations" in out.stdout
    again = subprocess.run([sys.executable, "-m", "zhiku", "db", "migrate", "--to", pg_url, "-q"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and "copied 0 documents (20 already there)" in again.stdout, again.stdout

    sqlite = KBService(settings)
    pg_settings = Settings(home=tmp_path / "other-home", embedder="use-m3", ui=False, database_url=pg_url)
    pg = KBService(pg_settings)
    try:
        for name in ("first", "second"):
            a, b = sqlite.get(name), pg.get(name)
            assert (a.documents, a.chunks, a.embedder, a.dim) == (b.documents, b.chunks, b.embedder, b.dim)
            for query in ("When was the Eiffel Tower completed?", "长城有多长", "penguin egg", "Pompeii"):
                for mode in ("bm25", "dense", "hybrid"):
                    want = [(h.document, h.text) for h in sqlite.search(name, query, top_k=3, mode=mode)]
                    got = [(h.document, h.text) for h in pg.search(name, query, top_k=3, mode=mode)]
                    assert got[:1] == want[:1], (name, query, mode, got, want)
        doc = next(d for d in pg.documents("first") if d.path == "sub/doc00.md")
        assert pg.document_path("first", doc.id).read_text(encoding="utf-8").startswith("# Note 0")  # original
    finally:
        sqlite.close()
        pg.close()
    from zhiku.chat.schema import HISTORY
    from zhiku.db import open_database

    history = HistoryStore(open_database(pg_settings, HISTORY))
    convs = history.list_conversations()
    assert len(convs) == 3 and all(c["messages"] == 2 for c in convs)
    msgs = history.get_conversation(convs[0]["id"])["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant"] and msgs[1]["feedback_score"] in (1, -1)
    assert msgs[1]["sources"] == [{"index": 1, "document": "a"}]
