"""The PostgreSQL store's per-knowledge-base HNSW index (on a real PostgreSQL + pgvector): built by prepare
once the base holds search.ANN_FROM chunks (lowered here so that a test base reaches it), not before; the
same results before (exact scan) and after (index walk); dropped before a big document goes in and built
again after it; built once when several processes prepare at once;
replaced when a builder died and left it invalid; dropped by a rebuild and built again by its prepare."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from zhiku.kb.store import KBRecord, NewChunk, NewDocument
from zhiku.kb.stores.postgres import search
from zhiku.kb.stores.postgres.store import PostgresStore

DIM = 16
THRESHOLD = 300


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _put(store: PostgresStore, kb: KBRecord, name: str, vecs: np.ndarray) -> None:
    texts = [f"{name} chunk {i} about topic{i % 7}" for i in range(len(vecs))]
    store.put_document(kb, NewDocument(name, name.encode().hex().ljust(64, "0"), "text", "ok", None, 0),
                       [NewChunk(t, {"page": None}, store.index_form(t)) for t in texts], vecs)


def _plan(store: PostgresStore, kb: KBRecord, q: np.ndarray) -> str:
    with store.pool.connection() as conn:
        rows = conn.execute(f"EXPLAIN SELECT id FROM chunk WHERE kb_id = {kb.id} ORDER BY embedding::vector({DIM})"
                            f" <=> %s::vector({DIM}) LIMIT 10", (q,)).fetchall()
    return "\n".join(r[0] for r in rows)


def _valid(store: PostgresStore, kb: KBRecord) -> bool:
    with store.pool.connection() as conn:
        return search.has_index(conn, kb.id)


@pytest.fixture
def store(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> PostgresStore:
    monkeypatch.setattr(search, "ANN_FROM", THRESHOLD)
    monkeypatch.setattr(search, "BULK_MIN", 50)
    return PostgresStore(pg_url)


def test_index_appears_past_the_threshold_and_results_stay_the_same(store: PostgresStore) -> None:
    rng = np.random.default_rng(5)
    kb = store.create_kb(KBRecord(0, "grows", "", "test-16", DIM, 500, 100, False, time.time()))
    small = store.create_kb(KBRecord(0, "small", "", "test-16", DIM, 500, 100, False, time.time()))
    _put(store, small, "s.txt", _unit(rng, 50))
    _put(store, kb, "a.txt", _unit(rng, 200))
    store.prepare(kb)
    assert not _valid(store, kb)  # 200 chunks: exact search, no index to keep up
    _put(store, kb, "b.txt", _unit(rng, 150))
    queries = _unit(rng, 20)
    before = [store.vector_search(kb, q, 10) for q in queries]
    steps: list[tuple[str, int, int]] = []
    store.prepare(kb, lambda what, done, total: steps.append((what, done, total)))
    assert _valid(store, kb) and steps == [("index", 0, 350), ("index", 350, 350)]
    assert f"Index Scan using {search.index_name(kb.id)}" in _plan(store, kb, queries[0])
    after = [store.vector_search(kb, q, 10) for q in queries]
    assert [[c for c, _ in r] for r in after] == [[c for c, _ in r] for r in before]
    assert np.allclose([s for r in after for _, s in r], [s for r in before for _, s in r], atol=1e-5)
    # the small base is not indexed, and its searches never see the big base's chunks
    store.prepare(small)
    assert not _valid(store, small)
    assert {store.fetch(small, [c])[c].document for c, _ in store.vector_search(small, queries[0], 20)} == {"s.txt"}
    # a big document (BULK_SHARE of the base) drops the index before its rows go in; prepare builds it again
    _put(store, kb, "c.txt", _unit(rng, 60))
    assert not _valid(store, kb) and len(store.vector_search(kb, queries[0], 10)) == 10
    store.prepare(kb)
    assert _valid(store, kb)
    _put(store, kb, "d.txt", _unit(rng, 20))  # a small one is added to the index as it stands
    assert _valid(store, kb)
    # a rebuild swaps the vectors and drops the index (exact meanwhile); its prepare builds it again
    ids = store.chunk_ids(kb)
    store.replace_vectors(kb, ids, _unit(rng, len(ids)), "other-16", DIM)
    assert not _valid(store, kb)
    exact = store.vector_search(kb, queries[1], 10)
    store.prepare(store.get_kb("grows"))
    assert _valid(store, kb) and [c for c, _ in store.vector_search(kb, queries[1], 10)] == [c for c, _ in exact]
    store.delete_kb(kb)
    assert not _valid(store, kb)


def test_concurrent_prepares_build_once_and_an_invalid_index_is_replaced(store: PostgresStore) -> None:
    rng = np.random.default_rng(6)
    kb = store.create_kb(KBRecord(0, "race", "", "test-16", DIM, 500, 100, False, time.time()))
    _put(store, kb, "a.txt", _unit(rng, THRESHOLD))
    built: list[bool] = []
    errors: list[BaseException] = []

    def prepare() -> None:  # each on its own connection, as separate processes would be
        try:
            with store.pool.connection() as conn:
                built.append(search.ensure_index(conn, kb))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=prepare) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sorted(built) == [False, False, True] and _valid(store, kb)
    # A builder killed mid-build leaves an invalid index behind. Forced here by marking the index invalid
    # (as superuser): such an index is not used by searches, and the next prepare replaces it.
    with store.pool.connection() as conn:
        conn.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = to_regclass(%s)",
                     (search.index_name(kb.id),))
    assert not _valid(store, kb)
    q = _unit(rng, 1)[0]
    assert "Index Scan" not in _plan(store, kb, q) and len(store.vector_search(kb, q, 10)) == 10
    store.prepare(kb)
    assert _valid(store, kb) and "Index Scan" in _plan(store, kb, q)
