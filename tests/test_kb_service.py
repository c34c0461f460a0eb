"""KBService end to end on real files written by real libraries, with the real use-m3 embedder (e5 once).
The tests of `svc` run on both stores: SQLite and a real PostgreSQL + pgvector."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from zhiku.config import Settings
from zhiku.kb.service import KBService
from zhiku.kb.types import UNINDEXED, DocumentNotFound, EmbedderMismatch, InvalidName, KBExists, KBNotFound

GREAT_WALL = ("长城是中国古代的军事防御工程，东起山海关，西至嘉峪关，全长约两万一千公里。"
              "修筑长城的历史可以追溯到西周时期，秦始皇统一六国后把各段城墙连接起来。")
TEA = "龙井茶产于浙江省杭州市西湖一带，以色绿、香郁、味甘、形美四绝著称，是中国十大名茶之一。"
EIFFEL = ("The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris. It was designed by "
          "the engineering company of Gustave Eiffel and completed in 1889 for the World's Fair.")
PENGUIN = ("Emperor penguins breed during the Antarctic winter. The male incubates the single egg on his feet "
           "for about sixty-five days while the female hunts at sea.")
VOLCANO = "Mount Vesuvius erupted in the year 79 and buried the Roman towns of Pompeii and Herculaneum in ash."


def write_corpus(folder: Path) -> None:
    """A docx with headings, a PDF, Markdown, HTML and a GB18030 text file, in Chinese and English."""
    import docx
    from fpdf import FPDF

    folder.mkdir(parents=True, exist_ok=True)
    d = docx.Document()
    d.add_heading("Landmarks", level=1)
    d.add_heading("France", level=2)
    d.add_paragraph(EIFFEL)
    d.save(str(folder / "landmarks.docx"))

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, "Chapter one is about birds of the far south.")
    pdf.add_page()
    pdf.multi_cell(0, 8, PENGUIN)
    pdf.output(str(folder / "birds.pdf"))

    (folder / "china.md").write_text(f"# 中国\n\n## 长城\n\n{GREAT_WALL}\n", encoding="utf-8")
    (folder / "tea.txt").write_bytes(TEA.encode("gb18030"))  # Chinese files are often not UTF-8
    (folder / "volcano.html").write_text(f"<html><body><nav>Home | About</nav><p>{VOLCANO}</p>"
                                         "<script>var x = 1;</script></body></html>", encoding="utf-8")


@pytest.fixture
def kb_settings(home: Path, database_url: str) -> Settings:
    return Settings(home=home, embedder="use-m3", ui=False, embed_threads=2, database_url=database_url)


@pytest.fixture
def svc(kb_settings: Settings) -> Iterator[KBService]:
    service = KBService(kb_settings)
    yield service
    service.close()


def counts(settings: Settings, kb_name: str) -> dict[str, int]:
    """Rows as the database holds them (read directly, not through the store)."""
    if settings.uses_postgres:
        import psycopg

        with psycopg.connect(settings.database_url) as pg:
            kb_id = pg.execute("SELECT id FROM knowledge_base WHERE name = %s", (kb_name,)).fetchone()[0]  # type: ignore[index]
            return {
                "documents": pg.execute("SELECT count(*) FROM document WHERE kb_id = %s", (kb_id,)).fetchone()[0],  # type: ignore[index]
                "chunks": pg.execute("SELECT count(*) FROM chunk WHERE kb_id = %s", (kb_id,)).fetchone()[0],  # type: ignore[index]
                "fts": pg.execute("SELECT count(*) FROM chunk WHERE kb_id = %s AND length(tsv) > 0",  # type: ignore[index]
                                  (kb_id,)).fetchone()[0],
                "originals": pg.execute("SELECT count(*) FROM original WHERE kb_id = %s", (kb_id,)).fetchone()[0],  # type: ignore[index]
            }
    conn = sqlite3.connect(settings.db_path)
    try:
        kb_id = conn.execute("SELECT id FROM knowledge_base WHERE name = ?", (kb_name,)).fetchone()[0]
        return {
            "documents": conn.execute("SELECT count(*) FROM document WHERE kb_id = ?", (kb_id,)).fetchone()[0],
            "chunks": conn.execute("SELECT count(*) FROM chunk WHERE kb_id = ?", (kb_id,)).fetchone()[0],
            "fts": conn.execute(f"SELECT count(*) FROM chunk_fts_{kb_id}").fetchone()[0],
        }
    finally:
        conn.close()


def test_ingest_real_files_and_find_known_passages(svc: KBService, tmp_path: Path) -> None:
    write_corpus(tmp_path / "docs")
    info = svc.create("测试库", "mixed corpus", chunk_size=200, chunk_overlap=40)
    assert (info.embedder, info.dim) == ("use-m3", 512)
    seen: list[tuple[str, int, int]] = []
    docs = svc.add_files("测试库", [tmp_path / "docs"], progress=lambda *a: seen.append(a))
    assert sorted(d.path for d in docs) == ["birds.pdf", "china.md", "landmarks.docx", "tea.txt", "volcano.html"]
    assert all(d.status == "ok" and d.chunk_count > 0 for d in docs if d.path != "tea.txt"), docs
    tea_doc = next(d for d in docs if d.path == "tea.txt")  # the encoding guess is reported, not hidden
    assert tea_doc.status == "warning" and "GB18030" in (tea_doc.error or "") and tea_doc.chunk_count == 1
    assert ("files", 5, 5) in seen and any(w == "chunks" for w, _, _ in seen)

    for mode in ("hybrid", "bm25", "dense"):
        zh = svc.search("测试库", "长城有多长？", top_k=3, mode=mode)
        assert zh[0].document == "china.md", (mode, zh)
        assert zh[0].heading == ["中国", "长城"]
        tea = svc.search("测试库", "龙井茶产自哪里", top_k=3, mode=mode)
        assert tea[0].document == "tea.txt" and "西湖" in tea[0].text, (mode, tea)
        en = svc.search("测试库", "When was the Eiffel Tower completed?", top_k=3, mode=mode)
        assert en[0].document == "landmarks.docx" and "1889" in en[0].text, (mode, en)
        assert en[0].heading == ["Landmarks", "France"]
        birds = svc.search("测试库", "How long does the male penguin incubate the egg?", top_k=3, mode=mode)
        assert birds[0].document == "birds.pdf" and birds[0].page == 2, (mode, birds)
        for hits in (zh, tea, en, birds):
            scores = [h.score for h in hits]
            assert all(0.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)

    html = svc.search("测试库", "Pompeii eruption", top_k=1)[0]
    assert html.document == "volcano.html" and "var x" not in html.text and "About" not in html.text
    # Relevance threshold and document filter.
    assert all(h.score >= 0.9 for h in svc.search("测试库", "Eiffel Tower 1889", top_k=5, score_threshold=0.9))
    pdf_id = next(d.id for d in docs if d.path == "birds.pdf")
    only = svc.search("测试库", "Eiffel Tower", top_k=5, document_ids=[pdf_id])
    assert only and {h.document for h in only} == {"birds.pdf"}
    info = svc.get("测试库")
    assert info.documents == 5 and info.chunks == sum(d.chunk_count for d in docs)


def test_bad_files_get_a_per_file_error_and_the_rest_goes_on(svc: KBService, tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text(PENGUIN)
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "broken.docx").write_bytes(b"PK\x03\x04 this is not a zip archive at all")
    (tmp_path / "data.xyz").write_text("unknown type")
    svc.create("bad")
    docs = {d.path: d for d in svc.add_files("bad", sorted(tmp_path.iterdir()))}
    assert docs["good.txt"].status == "ok"
    for name in ("empty.txt", "broken.docx", "data.xyz"):
        assert docs[name].status == "failed" and docs[name].error and docs[name].chunk_count == 0, docs[name]
    assert "unsupported" in (docs["data.xyz"].error or "")
    assert svc.search("bad", "penguin egg", top_k=1)[0].document == "good.txt"


def test_delete_document_removes_chunks_vectors_fts_rows_and_original(svc: KBService, kb_settings: Settings,
                                                                      tmp_path: Path) -> None:
    write_corpus(tmp_path)
    svc.create("del")
    docs = {d.path: d for d in svc.add_files("del", [tmp_path])}
    before = counts(kb_settings, "del")
    target = docs["landmarks.docx"]
    original = svc.document_path("del", target.id)
    assert original.read_bytes() == (tmp_path / "landmarks.docx").read_bytes()
    assert original.is_relative_to(kb_settings.home / "kb" / "del")
    svc.delete_document("del", target.id)
    after = counts(kb_settings, "del")
    assert {k: after[k] for k in ("documents", "chunks", "fts")} == {
        "documents": before["documents"] - 1, "chunks": before["chunks"] - target.chunk_count,
        "fts": before["fts"] - target.chunk_count}
    if kb_settings.uses_postgres:  # the database's copy of the original goes with the document
        assert after["originals"] == before["originals"] - 1
    assert not original.exists()
    assert all(h.document != "landmarks.docx" for h in svc.search("del", "Eiffel Tower 1889", top_k=10))
    assert all(h.document != "landmarks.docx" for h in svc.search("del", "Eiffel Tower 1889", mode="bm25"))
    with pytest.raises(DocumentNotFound):
        svc.delete_document("del", target.id)
    check = svc.store.check(svc.store.get_kb("del"))
    assert check == {"documents_incomplete": [], "orphan_fts_rows": 0}


def test_an_unindexed_document_keeps_its_original_until_reindexed(svc: KBService, kb_settings: Settings,
                                                                   tmp_path: Path) -> None:
    """Out of the search, on both stores, with its record and original kept (Chatchat's delete_docs without
    delete_content); re-indexing brings it back whole."""
    write_corpus(tmp_path)
    svc.create("aside")
    docs = {d.path: d for d in svc.add_files("aside", [tmp_path])}
    before = counts(kb_settings, "aside")
    target = docs["landmarks.docx"]
    kept = svc.unindex_document("aside", target.id)
    assert (kept.id, kept.status, kept.chunk_count) == (target.id, UNINDEXED, 0)
    after = counts(kb_settings, "aside")
    assert {k: after[k] for k in ("documents", "chunks", "fts")} == {
        "documents": before["documents"], "chunks": before["chunks"] - target.chunk_count,
        "fts": before["fts"] - target.chunk_count}
    if kb_settings.uses_postgres:
        assert after["originals"] == before["originals"]
    assert svc.document_path("aside", target.id).read_bytes() == (tmp_path / "landmarks.docx").read_bytes()
    assert all(h.document != "landmarks.docx" for h in svc.search("aside", "Eiffel Tower 1889", top_k=10))
    back = svc.reindex_document("aside", target.id)
    assert back.status == "ok" and back.chunk_count == target.chunk_count
    assert svc.search("aside", "Eiffel Tower 1889", top_k=1)[0].document == "landmarks.docx"
    assert svc.store.check(svc.store.get_kb("aside")) == {"documents_incomplete": [], "orphan_fts_rows": 0}


def test_sync_by_content_hash(svc: KBService, kb_settings: Settings, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text(EIFFEL)
    (src / "b.md").write_text(f"# Tea\n\n{TEA}\n")
    (src / "sub" / "c.txt").write_text(VOLCANO)
    (src / "skip.bin").write_bytes(b"\x00\x01")  # an unsupported suffix: listed as skipped, never stored
    svc.create("sync")
    first = svc.sync("sync", src)
    assert sorted(first["added"]) == ["a.txt", "b.md", "sub/c.txt"] and not first["removed"]
    a_chunks = svc.chunks("sync", svc.store.document_by_path(svc.store.get_kb("sync"), "a.txt").id)  # type: ignore[union-attr]

    (src / "b.md").write_text(f"# Tea\n\n{TEA}\n\n{PENGUIN}\n")
    (src / "sub" / "c.txt").unlink()
    (src / "d.txt").write_text(GREAT_WALL)
    second = svc.sync("sync", src)
    assert second == {"added": ["d.txt"], "updated": ["b.md"], "removed": ["sub/c.txt"], "unchanged": ["a.txt"],
                      "failed": [], "skipped": ["skip.bin"]}
    kb = svc.store.get_kb("sync")
    # Unchanged means untouched: same document, same chunk rows.
    assert svc.chunks("sync", svc.store.document_by_path(kb, "a.txt").id) == a_chunks  # type: ignore[union-attr]
    assert sorted(d.path for d in svc.documents("sync")) == ["a.txt", "b.md", "d.txt"]
    assert svc.search("sync", "penguin egg incubation", top_k=1)[0].document == "b.md"
    assert all(h.document != "sub/c.txt" for h in svc.search("sync", "Vesuvius Pompeii", top_k=5))
    third = svc.sync("sync", src)
    assert sorted(third["unchanged"]) == ["a.txt", "b.md", "d.txt"] and not third["added"] + third["updated"]
    c = counts(kb_settings, "sync")
    assert c["chunks"] == c["fts"] == sum(d.chunk_count for d in svc.documents("sync"))


def test_reindex_rebuild_and_embedder_mismatch(svc: KBService, tmp_path: Path) -> None:
    (tmp_path / "eiffel.txt").write_text(EIFFEL)
    svc.create("rb")
    doc = svc.add_files("rb", [tmp_path / "eiffel.txt"])[0]
    again = svc.add_files("rb", [tmp_path / "eiffel.txt"])[0]
    assert again.id == doc.id and again.added == doc.added  # unchanged file: left alone
    re = svc.reindex_document("rb", doc.id)
    assert re.id == doc.id and re.chunk_count == doc.chunk_count
    with pytest.raises(EmbedderMismatch, match="e5-small"):
        svc.search("rb", "Eiffel", embedder="e5-small")
    epoch = svc.store.get_kb("rb").vector_epoch
    events: list[tuple[str, int, int]] = []
    svc.rebuild("rb", progress=lambda *a: events.append(a))
    assert svc.store.get_kb("rb").vector_epoch == epoch + 1
    assert events[-1] == ("chunks", doc.chunk_count, doc.chunk_count)
    assert svc.search("rb", "Eiffel Tower", mode="dense")[0].document == "eiffel.txt"


def test_knowledge_base_lifecycle_errors_and_temporary_bases(svc: KBService, kb_settings: Settings) -> None:
    with pytest.raises(InvalidName):
        svc.create("../x")
    svc.create("life")
    with pytest.raises(KBExists):
        svc.create("life")
    with pytest.raises(KBNotFound):
        svc.get("nope")
    tmp = svc.create("tmp-chat", ttl_seconds=60)
    assert tmp.temporary and tmp.expires_at is not None
    assert [k.name for k in svc.list()] == ["life"]
    assert {k.name for k in svc.list(include_temporary=True)} == {"life", "tmp-chat"}
    assert svc.expire_temporary(now=tmp.expires_at - 1) == []
    assert svc.expire_temporary(now=tmp.expires_at + 1) == ["tmp-chat"]
    assert not (kb_settings.home / "kb" / "tmp-chat").exists()
    svc.delete("life")
    assert svc.list(include_temporary=True) == []
    assert not (kb_settings.home / "kb" / "life").exists()


def test_a_base_whose_folder_cannot_be_made_leaves_no_row(svc: KBService, kb_settings: Settings) -> None:
    blocker = kb_settings.home / "kb" / "blocked"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the folder would go", encoding="utf-8")
    with pytest.raises(OSError):
        svc.create("blocked")
    assert "blocked" not in [k.name for k in svc.list(include_temporary=True)]
    blocker.unlink()
    assert svc.create("blocked").name == "blocked"  # nothing half-made stands in the way


def test_uploads_are_sanitised_and_downloads_stay_inside(svc: KBService, kb_settings: Settings) -> None:
    svc.create("up")
    doc = svc.add_bytes("up", "../../../etc/evil\u2215notes.md", f"# Tea\n\n{TEA}\n".encode())
    assert doc.path == "notes.md" and doc.status == "ok"
    path = svc.document_path("up", doc.id)
    assert path.is_relative_to((kb_settings.home / "kb" / "up").resolve())
    if kb_settings.uses_postgres:  # another process's home has no copy: the database serves it
        data = path.read_bytes()
        path.unlink()
        assert svc.document_path("up", doc.id).read_bytes() == data
    assert svc.chunks("up", doc.id)[0]["metadata"]["heading"] == ["Tea"]


def test_ann_index_above_threshold_matches_exact_search(home: Path, tmp_path: Path) -> None:
    texts = [EIFFEL, PENGUIN, VOLCANO, TEA, GREAT_WALL]
    for i, t in enumerate(texts):
        (tmp_path / f"f{i}.txt").write_text(t)
    exact = KBService(Settings(home=home, embedder="use-m3", ui=False, ann_threshold=100_000))
    exact.create("ann")
    exact.add_files("ann", [tmp_path])
    queries = ["penguin eggs", "长城", "Pompeii", "茶叶", "tower in Paris"]
    want = [[h.chunk_id for h in exact.search("ann", q, top_k=3, mode="dense")] for q in queries]
    exact.close()
    approx = KBService(Settings(home=home, embedder="use-m3", ui=False, ann_threshold=2))
    got = [[h.chunk_id for h in approx.search("ann", q, top_k=3, mode="dense")] for q in queries]
    assert got == want
    assert (home / "kb" / "ann" / "ann.usearch").exists()
    (tmp_path / "new.txt").write_text("Kangaroos are marsupials that live in Australia.")
    new = approx.add_files("ann", [tmp_path / "new.txt"])[0]
    assert approx.search("ann", "kangaroo marsupial", top_k=1, mode="dense")[0].document_id == new.id
    approx.delete_document("ann", new.id)
    assert all(h.document_id != new.id for h in approx.search("ann", "kangaroo marsupial", top_k=5, mode="dense"))
    approx.close()


def test_ann_index_is_built_and_saved_by_ingestion_not_the_first_search(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i, t in enumerate([EIFFEL, PENGUIN, VOLCANO, TEA]):
        (src / f"f{i}.txt").write_text(t)
    index = home / "kb" / "big" / "ann.usearch"
    steps: list[tuple[str, int, int]] = []
    svc = KBService(Settings(home=home, embedder="use-m3", ui=False, ann_threshold=2))
    svc.create("big")
    svc.add_files("big", [src], progress=lambda what, done, total: steps.append((what, done, total)))
    assert index.exists() and ("index", 4, 4) in steps  # no search has run yet
    built = index.stat().st_mtime_ns
    svc.add_files("big", [src])  # nothing changed: the index is left alone
    assert index.stat().st_mtime_ns == built
    svc.close()
    # Another process (here: another service) finds the saved index complete: nothing to add on load.
    from zhiku.kb.stores.sqlite.ann import AnnIndex

    other = KBService(Settings(home=home, embedder="use-m3", ui=False, ann_threshold=2))
    kb = other.store.get_kb("big")
    loaded = AnnIndex(home / "kb" / "big", kb)
    assert len(loaded) == 4 and loaded.reconcile(other.store, kb) == 0
    other.rebuild("big", embedder="e5-small")  # new vectors: the old index is replaced right away
    kb = other.store.get_kb("big")
    assert kb.vector_epoch > loaded.epoch and AnnIndex(home / "kb" / "big", kb).reconcile(other.store, kb) == 0
    assert other.search("big", "penguin eggs", top_k=1, mode="dense")[0].document == "f1.txt"
    other.close()


def test_e5_small_knowledge_base(home: Path, tmp_path: Path) -> None:
    (tmp_path / "zh.txt").write_text(GREAT_WALL + "\n\n" + TEA)
    (tmp_path / "en.txt").write_text(PENGUIN)
    svc = KBService(Settings(home=home, embedder="e5-small", ui=False))
    try:
        info = svc.create("e5")
        assert (info.embedder, info.dim) == ("e5-small", 384)
        svc.add_files("e5", [tmp_path])
        hit = svc.search("e5", "西湖出产什么茶", top_k=1, mode="dense")[0]
        assert hit.document == "zh.txt" and 0 < hit.score <= 1
        assert svc.search("e5", "Antarctic birds", top_k=1, mode="dense")[0].document == "en.txt"
        assert svc.embed(["你好", "hello"]).shape == (2, 384)
    finally:
        svc.close()


def test_an_ann_failure_after_ingestion_keeps_the_documents(home: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A forced failure (test double for a rare one, e.g. a full disk while saving the index)."""
    from zhiku.kb.stores.sqlite.ann import AnnIndex

    docs_dir = tmp_path / "docs"  # not tmp_path itself: ZHIKU_HOME lies there, and a scan lists what it skips
    docs_dir.mkdir()
    (docs_dir / "a.txt").write_text(EIFFEL)
    (docs_dir / "b.txt").write_text(PENGUIN)
    (docs_dir / "c.txt").write_text(VOLCANO)
    real = AnnIndex.save

    def full_disk(self: AnnIndex) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(AnnIndex, "save", full_disk)
    svc = KBService(Settings(home=home, embedder="use-m3", ui=False, ann_threshold=2))
    svc.create("fragile")
    docs = svc.add_files("fragile", [docs_dir])
    assert [d.status for d in docs] == ["ok", "ok", "ok"]
    assert svc.get("fragile").chunks == 3
    monkeypatch.setattr(AnnIndex, "save", real)
    assert svc.search("fragile", "penguin eggs", top_k=1, mode="dense")[0].document == "b.txt"
    svc.close()


def test_llama_cpp_loads_models_after_the_ann_index_was_used(smollm_path: Path, tmp_path: Path) -> None:
    """In a fresh interpreter (import order is the point): an HNSW search first, then a model load, as in
    `zhiku ask` over a big base. usearch's own C++ runtime used to make llama.cpp fail with std::bad_cast."""
    import subprocess
    import sys

    script = f"""
import numpy as np
from zhiku.kb.stores.sqlite.ann import _usearch_index
index = _usearch_index()(ndim=8, metric="cos", dtype="f32")
index.add(np.arange(20, dtype=np.uint64), np.random.default_rng(0).random((20, 8), dtype=np.float32))
assert len(index.search(np.ones(8, dtype=np.float32), 3).keys) == 3
from zhiku.llm.llama_cpp import LlamaCppModel
model = LlamaCppModel({str(smollm_path)!r}, "smollm2", n_ctx=256, n_threads=1)
print("tokens", model.count_tokens("hello world"))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0 and "tokens" in out.stdout, out.stderr[-2000:]
