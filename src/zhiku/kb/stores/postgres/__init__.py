"""The PostgreSQL + pgvector store: pgvector HNSW (cosine) and BM25 over jieba/Porter lexemes in a tsvector."""

from zhiku.kb.stores.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
