"""Knowledge-base tables (handed to zhiku.db.connect as OWNER). The same shape maps onto PostgreSQL + pgvector.

Each knowledge base also gets its own FTS5 table `chunk_fts_<kb id>` (created with the knowledge base, see
store.py): BM25 statistics are then per knowledge base, and a query never scans another one's postings.
"""

from zhiku import db

SCHEMA = """
CREATE TABLE IF NOT EXISTS knowledge_base (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE,
    description   TEXT NOT NULL DEFAULT '',
    embedder      TEXT NOT NULL,
    dim           INTEGER NOT NULL,
    chunk_size    INTEGER NOT NULL,
    chunk_overlap INTEGER NOT NULL,
    title_enhance INTEGER NOT NULL DEFAULT 0,
    created       REAL NOT NULL,
    expires_at    REAL,                        -- set for temporary knowledge bases (file chat)
    revision      INTEGER NOT NULL DEFAULT 0,  -- bumped by every write: in-memory search caches check it
    vector_epoch  INTEGER NOT NULL DEFAULT 0   -- bumped when every vector is replaced (rebuild)
);

CREATE TABLE IF NOT EXISTS document (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kb_id       INTEGER NOT NULL REFERENCES knowledge_base(id) ON DELETE CASCADE,
    path        TEXT NOT NULL,                 -- relative to the knowledge base, '/'-separated
    sha256      TEXT NOT NULL,
    loader      TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL,                 -- ok | warning | failed
    error       TEXT,
    chunk_count INTEGER NOT NULL DEFAULT 0,
    size        INTEGER NOT NULL DEFAULT 0,
    added       REAL NOT NULL,
    UNIQUE (kb_id, path)
);

-- AUTOINCREMENT: a chunk id is never reused, so a persisted ANN index can be reconciled by id.
CREATE TABLE IF NOT EXISTS chunk (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id INTEGER NOT NULL REFERENCES document(id) ON DELETE CASCADE,
    kb_id       INTEGER NOT NULL,
    ordinal     INTEGER NOT NULL,
    text        TEXT NOT NULL,
    metadata    TEXT NOT NULL DEFAULT '{}',    -- JSON: page, heading trail, char offsets
    vector      BLOB NOT NULL                  -- float32 little-endian, knowledge_base.dim values;
                                               -- empty (X'') while the chunk waits to be embedded
);
CREATE INDEX IF NOT EXISTS chunk_by_kb ON chunk (kb_id, id);
CREATE INDEX IF NOT EXISTS chunk_by_document ON chunk (document_id, ordinal);
-- The embedding queue: the chunks without a vector yet (kb/embedding.py takes them in id order).
CREATE INDEX IF NOT EXISTS chunk_pending ON chunk (kb_id, id) WHERE length(vector) = 0;

-- A rebuild under way (kb/stores/sqlite/rebuild.py): the embedder it moves to, and the new vectors, kept
-- beside the old ones until every chunk has one (then moved into chunk.vector in one transaction).
CREATE TABLE IF NOT EXISTS rebuild (
    kb_id    INTEGER PRIMARY KEY REFERENCES knowledge_base(id) ON DELETE CASCADE,
    embedder TEXT NOT NULL,
    dim      INTEGER NOT NULL,
    started  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rebuild_vector (
    chunk_id INTEGER PRIMARY KEY REFERENCES chunk(id) ON DELETE CASCADE,
    kb_id    INTEGER NOT NULL,
    vector   BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS rebuild_vector_by_kb ON rebuild_vector (kb_id);

-- The embedding speed last measured per knowledge base, for "~4 min left" in every process.
CREATE TABLE IF NOT EXISTS embed_rate (
    kb_id        INTEGER PRIMARY KEY REFERENCES knowledge_base(id) ON DELETE CASCADE,
    chunks_per_s REAL NOT NULL,
    updated      REAL NOT NULL
);
"""

OWNER = db.Schema(owner="kb", sqlite=SCHEMA)
