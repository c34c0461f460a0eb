"""zhiku.db knows no feature: each owner (the knowledge-base stores, the history) hands its schema in, in any
order, on SQLite and on a real PostgreSQL, and a database migrated when the migrations were counted for all
owners together opens without applying anything twice."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

from zhiku import db
from zhiku.chat.history import HistoryStore
from zhiku.chat.schema import HISTORY, PG_SCHEMA
from zhiku.kb.store import KBRecord
from zhiku.kb.stores.postgres.schema import SCHEMA as KB_PG_TABLES
from zhiku.kb.stores.postgres.store import PostgresStore
from zhiku.kb.stores.sqlite.store import SQLiteStore

NOTE = db.Schema(owner="notes", sqlite="CREATE TABLE IF NOT EXISTS note (id INTEGER PRIMARY KEY, body TEXT);",
                 postgres=("CREATE TABLE note (id BIGSERIAL PRIMARY KEY, body TEXT)",
                           "ALTER TABLE note ADD COLUMN pinned BOOLEAN NOT NULL DEFAULT FALSE"))


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_each_owner_brings_its_own_tables_to_one_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "zhiku.db"
    history = HistoryStore(path)  # the history first: the knowledge-base tables are not its business
    try:
        assert "conversation" in _tables(path) and "knowledge_base" not in _tables(path)
        store = SQLiteStore(path)
        try:
            assert store.list_kbs() == [] and {"conversation", "knowledge_base", "chunk"} <= _tables(path)
        finally:
            store.close()
    finally:
        history.close()
    conn = db.connect(path, NOTE)
    conn.close()
    assert "note" in _tables(path)


def test_postgres_owners_keep_their_own_versions(pg_url: str) -> None:
    HistoryStore(db.PostgresDatabase(pg_url, HISTORY))
    store = PostgresStore(pg_url)
    db.postgres_pool(pg_url, NOTE)
    # kb 2: the embedding queue; 3: rebuilds through it
    assert db.schema_versions(pg_url) == {"history": 1, "kb": 3, "notes": 2}
    with db.postgres_pool(pg_url, NOTE).connection() as conn:
        # the knowledge-base owner's configure reached every pooled connection, made before it came or after
        assert conn.execute("SHOW hnsw.ef_search").fetchone()[0] == "200"
        conn.execute("INSERT INTO note (body, pinned) VALUES ('x', TRUE)")
    store.close()


def test_a_database_migrated_before_owners_counted_their_own_opens_unchanged(pg_url: str) -> None:
    # what zhiku wrote before: one migration 1 holding both owners' tables, counted for all
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(KB_PG_TABLES + PG_SCHEMA)
        conn.execute("CREATE TABLE zhiku_schema (version integer NOT NULL)")
        conn.execute("INSERT INTO zhiku_schema (version) VALUES (1)")
    store = PostgresStore(pg_url)  # would fail with "relation already exists" if migration 1 ran again
    store.create_kb(KBRecord(id=0, name="old", description="", embedder="use-m3", dim=512, chunk_size=500,
                             chunk_overlap=100, title_enhance=False, created=0.0))
    history = HistoryStore(db.PostgresDatabase(pg_url, HISTORY))
    history.ensure_conversation(None, "llm", "still works")
    assert [k.name for k in store.list_kbs()] == ["old"]
    # the old shared count stays as it was; the knowledge-base store's later migrations (2, the embedding queue;
    # 3, rebuilds) were applied on top and are counted as its own
    assert db.schema_versions(pg_url) == {"all (before owners kept their own)": 1, "kb": 3}
    store.close()


def test_threads_opening_a_new_sqlite_database_at_once_all_get_in(tmp_path: Path) -> None:
    """The background embedder's first connection beside ingestion's on a new home: turning a new database to
    WAL answers "database is locked" at once (no busy wait) to the others; before, one round in ~40 failed."""
    import threading

    from zhiku.kb.stores.sqlite.schema import OWNER as KB_OWNER

    failures: list[str] = []
    for i in range(100):
        path = tmp_path / f"r{i}" / "zhiku.db"

        def open_it(path: Path = path) -> None:
            try:
                db.connect(path, KB_OWNER).execute("SELECT count(*) FROM knowledge_base").fetchone()
            except sqlite3.Error as e:
                failures.append(repr(e))

        threads = [threading.Thread(target=open_it) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []
