"""The SQLite store: FTS5 + jieba for BM25, exact or usearch HNSW dense search, one file under ZHIKU_HOME."""

from zhiku.kb.stores.sqlite.store import SQLiteStore, fts_table

__all__ = ["SQLiteStore", "fts_table"]
