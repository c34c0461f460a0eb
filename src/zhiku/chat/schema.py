"""Tables for conversations, their messages and feedback on answers.

A message row is written only once it is complete, each in its own transaction, so a crash mid-answer
leaves the conversation as it was before the question (plus, at most, the question itself).
"""

from zhiku import db

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversation (
    id        TEXT PRIMARY KEY,
    title     TEXT NOT NULL DEFAULT '',
    mode      TEXT NOT NULL DEFAULT 'llm',
    file_kb   TEXT,                       -- temporary knowledge base holding this conversation's uploads
    created   REAL NOT NULL,
    updated   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversation_updated ON conversation(updated);

CREATE TABLE IF NOT EXISTS message (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,   -- order within a conversation
    id              TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL REFERENCES conversation(id) ON DELETE CASCADE,
    role            TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content         TEXT NOT NULL,
    mode            TEXT NOT NULL,
    sources         TEXT NOT NULL DEFAULT '[]',          -- JSON list, numbered as cited
    tool_calls      TEXT NOT NULL DEFAULT '[]',          -- JSON list: the agent's calls and results
    usage           TEXT NOT NULL DEFAULT '{}',          -- JSON: prompt/completion tokens
    timings         TEXT NOT NULL DEFAULT '{}',          -- JSON: milliseconds per phase
    model           TEXT NOT NULL DEFAULT '',
    created         REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS message_conversation ON message(conversation_id, seq);

CREATE TABLE IF NOT EXISTS feedback (
    message_id TEXT PRIMARY KEY REFERENCES message(id) ON DELETE CASCADE,
    score      INTEGER NOT NULL CHECK (score IN (-1, 1)),
    reason     TEXT NOT NULL DEFAULT '',
    created    REAL NOT NULL
);
"""

# The same tables on PostgreSQL (the history's migration 1, applied by zhiku.db).
PG_SCHEMA = """
CREATE TABLE conversation (
    id        TEXT PRIMARY KEY,
    title     TEXT NOT NULL DEFAULT '',
    mode      TEXT NOT NULL DEFAULT 'llm',
    file_kb   TEXT,
    created   DOUBLE PRECISION NOT NULL,
    updated   DOUBLE PRECISION NOT NULL
);
CREATE INDEX conversation_updated ON conversation(updated);

CREATE TABLE message (
    seq             BIGSERIAL PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    conversation_id TEXT NOT NULL REFERENCES conversation(id) ON DELETE CASCADE,
    role            TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content         TEXT NOT NULL,
    mode            TEXT NOT NULL,
    sources         TEXT NOT NULL DEFAULT '[]',
    tool_calls      TEXT NOT NULL DEFAULT '[]',
    usage           TEXT NOT NULL DEFAULT '{}',
    timings         TEXT NOT NULL DEFAULT '{}',
    model           TEXT NOT NULL DEFAULT '',
    created         DOUBLE PRECISION NOT NULL
);
CREATE INDEX message_conversation ON message(conversation_id, seq);

CREATE TABLE feedback (
    message_id TEXT PRIMARY KEY REFERENCES message(id) ON DELETE CASCADE,
    score      INTEGER NOT NULL CHECK (score IN (-1, 1)),
    reason     TEXT NOT NULL DEFAULT '',
    created    DOUBLE PRECISION NOT NULL
);
"""

# Migration 1 was the first of all zhiku's (legacy=(1,)): the knowledge bases' tables came in the same step.
HISTORY = db.Schema(owner="history", sqlite=SCHEMA, postgres=(PG_SCHEMA,), legacy=(1,))
