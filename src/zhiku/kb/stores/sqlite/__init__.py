"""The SQLite store (store.py): FTS5 + jieba for BM25 (fts.py), exact or usearch HNSW dense search (dense.py,
ann.py), one file under ZHIKU_HOME."""
