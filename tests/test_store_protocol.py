"""The Store protocol on both stores (SQLite and a real PostgreSQL + pgvector), below the services:
writes, BM25 and dense search (scores in [0, 1]), document filters, deletion, statistics, conflicts, and
several writers at once. Vectors are made here (unit vectors near chosen directions), texts are real."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from zhiku.config import Settings
from zhiku.kb.store import KBRecord, NewChunk, NewDocument, Store, StoreConflict
from zhiku.kb.stores import open_store
from zhiku.kb.types import DocumentNotFound, KBExists, KBNotFound

DIM = 16
TEXTS = {
    "eiffel.txt": ["The Eiffel Tower is a wrought-iron lattice tower in Paris, completed in 1889.",
                   "Gustave Eiffel's company designed and built the tower for the World's Fair."],
    "wall.txt": ["长城是中国古代的军事防御工程，全长两万多公里。", "长城的修筑历史可上溯到西周时期。"],
    "penguin.txt": ["Emperor penguins breed in the Antarctic winter and the males incubate the eggs."],
}


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _put(store: Store, kb: KBRecord, path: str, texts: list[str], seed: int) -> int:
    vecs = np.stack([_vec(seed + i) for i in range(len(texts))])
    doc = NewDocument(path, f"{seed:064x}", "text", "ok", None, sum(map(len, texts)))
    return store.put_document(kb, doc, [NewChunk(t, {"page": None}, store.index_form(t)) for t in texts], vecs).id


@pytest.fixture
def store(home: Path, database_url: str) -> Store:
    s = open_store(Settings(home=home, ui=False, database_url=database_url))
    yield s  # type: ignore[misc]
    s.close()


def _kb(store: Store, name: str = "t") -> KBRecord:
    return store.create_kb(KBRecord(0, name, "", "test-16", DIM, 500, 100, False, time.time()))


def test_write_search_delete_on_both_stores(store: Store) -> None:
    kb = _kb(store)
    with pytest.raises(KBExists):
        _kb(store)
    ids = {p: _put(store, kb, p, t, 100 * i) for i, (p, t) in enumerate(TEXTS.items())}
    assert store.counts(kb) == (3, 5)
    top = store.text_search(kb, "When was the Eiffel Tower completed?", 3)
    assert top and 0 < top[0][1] < 1 and all(a[1] >= b[1] for a, b in zip(top, top[1:], strict=False))
    rows = store.fetch(kb, [c for c, _ in top])
    assert rows[top[0][0]].document == "eiffel.txt" and "1889" in rows[top[0][0]].text
    zh = store.text_search(kb, "长城有多长", 1)
    assert store.fetch(kb, [zh[0][0]])[zh[0][0]].document == "wall.txt"
    assert store.text_search(kb, "penguins", 5) and store.text_search(kb, "penguin", 5)  # stemmed alike
    assert store.text_search(kb, '") OR * NEAR(', 5) == []  # never query syntax, never an error
    # dense: the chunk whose vector is the query comes first with cosine 1.0
    hit = store.vector_search(kb, _vec(200), 2)
    assert hit[0][0] == store.chunks(kb, ids["penguin.txt"])[0].id and hit[0][1] == pytest.approx(1.0, abs=1e-5)
    only = store.vector_search(kb, _vec(200), 5, doc_ids=[ids["wall.txt"]])
    assert {store.fetch(kb, [c])[c].document for c, _ in only} == {"wall.txt"} and len(only) == 2
    assert all(store.fetch(kb, [c])[c].document == "eiffel.txt"
               for c, _ in store.text_search(kb, "tower", 5, doc_ids=[ids["eiffel.txt"]]))
    assert store.check(kb) == {"documents_incomplete": [], "orphan_fts_rows": 0}
    # replacing a document (same path) and deleting one keep every index and statistic consistent
    _put(store, kb, "eiffel.txt", ["The tower was repainted in 2019."], 999)
    assert store.counts(kb) == (3, 4) and store.check(kb)["orphan_fts_rows"] == 0
    assert not store.text_search(kb, "Gustave", 5)
    store.delete_document(kb, ids["penguin.txt"])
    with pytest.raises(DocumentNotFound):
        store.delete_document(kb, ids["penguin.txt"])
    assert store.text_search(kb, "penguins", 5) == [] and store.counts(kb) == (2, 3)
    assert store.check(kb) == {"documents_incomplete": [], "orphan_fts_rows": 0}
    # a rebuild that lost a race with a writer is refused with a typed error
    cids, texts = store.chunk_texts(kb)
    _put(store, kb, "late.txt", ["A late arrival."], 7)
    with pytest.raises(StoreConflict):
        store.replace_vectors(kb, cids, np.stack([_vec(1)] * len(cids)), "test-16", DIM)
    cids = store.chunk_ids(kb)
    store.replace_vectors(kb, cids, np.stack([_vec(5)] * len(cids)), "other-16", DIM)
    assert store.get_kb("t").embedder == "other-16" and store.vector_search(kb, _vec(5), 1)[0][1] > 0.99
    store.delete_kb(kb)
    with pytest.raises(KBNotFound):
        store.get_kb("t")


def test_concurrent_writers_lose_nothing(home: Path, database_url: str) -> None:
    """Four writers (each its own store object, as separate processes have) into one knowledge base."""
    settings = Settings(home=home, ui=False, database_url=database_url)
    first = open_store(settings)
    kb = _kb(first, "shared")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        s = open_store(settings)
        try:
            for i in range(10):
                _put(s, kb, f"w{n}/doc{i}.txt", [f"writer {n} document {i} about topic{i}", "common words here"],
                     1000 * n + 10 * i)
                _put(s, kb, "same.txt", [f"everyone writes this path, now {n}"], n)  # same path from all
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            s.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    docs = first.documents(kb)
    assert len(docs) == 41 and len({d.path for d in docs}) == 41
    assert first.counts(kb) == (41, 81)
    assert first.check(kb) == {"documents_incomplete": [], "orphan_fts_rows": 0}
    assert len(first.text_search(kb, "topic3", 10)) == 4
    first.close()
