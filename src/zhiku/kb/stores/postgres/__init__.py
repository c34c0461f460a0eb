"""The PostgreSQL + pgvector store (store.py): pgvector HNSW and BM25 over jieba/Porter lexemes in a tsvector
(search.py, text.py), schema in schema.py."""
