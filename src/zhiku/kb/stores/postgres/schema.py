"""Knowledge-base tables on PostgreSQL (the migrations of OWNER, applied by zhiku.db). The same model as on SQLite, plus:

- chunk.embedding is `vector` (any dimension); each knowledge base gets a partial HNSW cosine index over
  `embedding::vector(<its dim>)` (created with it, see store.py), so knowledge bases of different
  embedders share one table and a search never walks another base's graph;
- chunk.tsv holds the chunk's full-text lexemes (jieba-cut CJK, Porter-stemmed English, made in Python:
  no text-search configuration or server extension besides pgvector is needed), chunk.ntok its length;
- term_stats holds each lexeme's document frequency per knowledge base, and knowledge_base.chunks/tokens the
  totals, both kept in the writing transaction, so BM25 needs no scan to find IDF and the average length;
- original keeps the uploaded files, so that every process can serve and re-index them.
"""

from typing import Any

from zhiku import db
from zhiku.kb.stores.postgres.search import EF_SEARCH

SCHEMA = """
CREATE TABLE knowledge_base (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    description   TEXT NOT NULL DEFAULT '',
    embedder      TEXT NOT NULL,
    dim           INTEGER NOT NULL,
    chunk_size    INTEGER NOT NULL,
    chunk_overlap INTEGER NOT NULL,
    title_enhance BOOLEAN NOT NULL DEFAULT FALSE,
    created       DOUBLE PRECISION NOT NULL,
    expires_at    DOUBLE PRECISION,
    revision      BIGINT NOT NULL DEFAULT 0,
    vector_epoch  BIGINT NOT NULL DEFAULT 0,
    chunks        BIGINT NOT NULL DEFAULT 0,
    tokens        BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE document (
    id          BIGSERIAL PRIMARY KEY,
    kb_id       BIGINT NOT NULL REFERENCES knowledge_base(id) ON DELETE CASCADE,
    path        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    loader      TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL,
    error       TEXT,
    chunk_count INTEGER NOT NULL DEFAULT 0,
    size        BIGINT NOT NULL DEFAULT 0,
    added       DOUBLE PRECISION NOT NULL,
    UNIQUE (kb_id, path)
);

CREATE TABLE chunk (
    id          BIGSERIAL PRIMARY KEY,
    document_id BIGINT NOT NULL REFERENCES document(id) ON DELETE CASCADE,
    kb_id       BIGINT NOT NULL,
    ordinal     INTEGER NOT NULL,
    text        TEXT NOT NULL,
    metadata    TEXT NOT NULL DEFAULT '{}',
    embedding   vector NOT NULL,
    tsv         tsvector NOT NULL,
    ntok        INTEGER NOT NULL
);
CREATE INDEX chunk_by_kb ON chunk (kb_id, id);
CREATE INDEX chunk_by_document ON chunk (document_id, ordinal);
CREATE INDEX chunk_tsv ON chunk USING gin (tsv);

CREATE TABLE term_stats (
    kb_id  BIGINT NOT NULL REFERENCES knowledge_base(id) ON DELETE CASCADE,
    lexeme TEXT NOT NULL,
    df     BIGINT NOT NULL,
    PRIMARY KEY (kb_id, lexeme)
);

CREATE TABLE original (
    kb_id  BIGINT NOT NULL REFERENCES knowledge_base(id) ON DELETE CASCADE,
    sha256 TEXT NOT NULL,
    name   TEXT NOT NULL,
    data   BYTEA NOT NULL,
    PRIMARY KEY (kb_id, sha256, name)
);
"""

# Migration 2: vectors may come after the text (the embedding queue, kb/embedding.py): a chunk without one
# waits for it, and the partial index finds the waiting chunks of a knowledge base at once.
QUEUE = """
ALTER TABLE chunk ALTER COLUMN embedding DROP NOT NULL;
CREATE INDEX chunk_pending ON chunk (kb_id, id) WHERE embedding IS NULL;
CREATE TABLE embed_rate (
    kb_id        BIGINT PRIMARY KEY REFERENCES knowledge_base(id) ON DELETE CASCADE,
    chunks_per_s DOUBLE PRECISION NOT NULL,
    updated      DOUBLE PRECISION NOT NULL
);
"""

# Migration 3: rebuilds through the queue (kb/stores/postgres/rebuild.py): the embedder a rebuild moves to,
# and the new vectors kept beside the old ones until every chunk has one.
REBUILD = """
CREATE TABLE rebuild (
    kb_id    BIGINT PRIMARY KEY REFERENCES knowledge_base(id) ON DELETE CASCADE,
    embedder TEXT NOT NULL,
    dim      INTEGER NOT NULL,
    started  DOUBLE PRECISION NOT NULL
);
CREATE TABLE rebuild_vector (
    chunk_id  BIGINT PRIMARY KEY REFERENCES chunk(id) ON DELETE CASCADE,
    kb_id     BIGINT NOT NULL,
    embedding vector NOT NULL
);
CREATE INDEX rebuild_vector_by_kb ON rebuild_vector (kb_id);
"""


def configure(conn: Any) -> None:
    """Every pooled connection: pgvector's adapter and the search's session settings."""
    from pgvector.psycopg import register_vector

    register_vector(conn)
    conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(EF_SEARCH),))
    # JIT compiling a BM25 statement over a big base (cost past jit_above_cost) takes longer than running it.
    conn.execute("SELECT set_config('jit', 'off', false)")


# Migration 1 was the first of all zhiku's (legacy=(1,)): the history's tables came in the same step.
OWNER = db.Schema(owner="kb", postgres=("CREATE EXTENSION IF NOT EXISTS vector;\n" + SCHEMA, QUEUE, REBUILD), legacy=(1,),
                  configure=configure)
