"""`zhiku db migrate`: copy a SQLite home into PostgreSQL, without re-embedding, safely re-runnable.

Knowledge bases (settings, documents, chunks, vectors, originals) go one document per transaction, and a
big one gets its HNSW index built once at the end (PostgresStore.prepare); a
document already in the destination with the same content hash and chunk count is skipped, so a run that
was interrupted simply runs again. Conversations go one per transaction with their messages (in order)
and feedback, each row inserted only if absent. At the end the counts of both sides are compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zhiku import db
from zhiku.chat.schema import HISTORY
from zhiku.kb.ingest import original_path
from zhiku.kb.store import KBRecord, NewChunk, NewDocument
from zhiku.kb.stores.postgres.store import PostgresStore
from zhiku.kb.stores.sqlite.store import SQLiteStore
from zhiku.kb.types import KBError, KBNotFound, Progress


@dataclass
class Report:
    copied_documents: int = 0
    skipped_documents: int = 0
    conversations: int = 0
    counts: dict[str, tuple[object, object]] = field(default_factory=dict)  # what: (source, destination)

    @property
    def mismatches(self) -> list[str]:
        return [f"{what}: {a} in SQLite, {b} in PostgreSQL" for what, (a, b) in self.counts.items() if a != b]


def migrate(home: Path, sqlite_path: Path, url: str, progress: Progress | None = None) -> Report:
    if not sqlite_path.is_file():
        raise KBError(f"no SQLite database at {sqlite_path}: nothing to migrate")
    src, dst = SQLiteStore(sqlite_path), PostgresStore(url)
    report = Report()
    try:
        kbs = src.list_kbs()
        total = sum(src.counts(kb)[0] for kb in kbs)
        done = 0
        for kb in kbs:
            target = _target_kb(dst, kb)
            have = {d.path: d for d in dst.documents(target)}
            for doc in src.documents(kb):
                old = have.get(doc.path)
                if old is not None and (old.sha256, old.chunk_count, old.status) == (doc.sha256, doc.chunk_count,
                                                                                      doc.status):
                    report.skipped_documents += 1
                else:
                    _copy_document(src, dst, kb, target, doc.id, home)
                    report.copied_documents += 1
                done += 1
                if progress is not None:
                    progress("documents", done, total)
            dst.prepare(target, progress)  # a bulk load: rows first, the HNSW index built once after them
            report.counts[f"knowledge base '{kb.name}' documents, chunks"] = (src.counts(kb), dst.counts(target))
        report.conversations = _copy_history(sqlite_path, url, progress)
        for table in ("conversation", "message", "feedback"):
            report.counts[table] = (_count(db.SqliteDatabase(sqlite_path, HISTORY), table), _count(db.PostgresDatabase(url, HISTORY),
                                                                                         table))
    finally:
        src.close()
        dst.close()
    return report


def _target_kb(dst: PostgresStore, kb: KBRecord) -> KBRecord:
    try:
        target = dst.get_kb(kb.name)
    except KBNotFound:
        return dst.create_kb(KBRecord(**{**kb.__dict__, "id": 0, "revision": 0, "vector_epoch": 0}))
    if (target.embedder, target.dim) != (kb.embedder, kb.dim):
        raise KBError(f"knowledge base '{kb.name}' exists in PostgreSQL with embedder {target.embedder} "
                      f"({target.dim}-d), not {kb.embedder} ({kb.dim}-d): delete it there or rename one")
    return target


def _copy_document(src: SQLiteStore, dst: PostgresStore, kb: KBRecord, target: KBRecord, doc_id: int,
                   home: Path) -> None:
    doc = src.document(kb, doc_id)
    rows = src.chunks(kb, doc_id)
    ids, _docs, vectors = src.vectors(kb, chunk_ids=np.array([r.id for r in rows], dtype=np.int64))
    order = {int(c): i for i, c in enumerate(ids)}
    # A document still waiting for some vectors goes over waiting for all of them (PostgreSQL's queue).
    vecs = None if len(order) < len(rows) else vectors[[order[r.id] for r in rows]] if rows else vectors
    original = original_path(home / "kb" / kb.name / "files", doc.sha256, doc.path)
    new = NewDocument(doc.path, doc.sha256, doc.loader, doc.status, doc.error, doc.size,
                      original if original.is_file() else None)
    dst.put_document(target, new, [NewChunk(r.text, r.metadata) for r in rows], vecs)


def _copy_history(sqlite_path: Path, url: str, progress: Progress | None) -> int:
    src, dst = db.SqliteDatabase(sqlite_path, HISTORY), db.PostgresDatabase(url, HISTORY)
    try:
        with src.read() as s:
            convs = s.rows("SELECT * FROM conversation ORDER BY created")
        for i, conv in enumerate(convs, start=1):
            with src.read() as s:
                messages = s.rows("SELECT * FROM message WHERE conversation_id = ? ORDER BY seq", (conv["id"],))
                votes = s.rows("SELECT f.* FROM feedback f JOIN message m ON m.id = f.message_id"
                               " WHERE m.conversation_id = ?", (conv["id"],))
            with dst.transaction() as d:
                d.run("INSERT INTO conversation (id, title, mode, file_kb, created, updated) VALUES (?,?,?,?,?,?)"
                      " ON CONFLICT (id) DO NOTHING", [conv[k] for k in ("id", "title", "mode", "file_kb", "created",
                                                                          "updated")])
                cols = ("id", "conversation_id", "role", "content", "mode", "sources", "tool_calls", "usage",
                        "timings", "model", "created")
                for m in messages:
                    d.run(f"INSERT INTO message ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
                          " ON CONFLICT (id) DO NOTHING", [m[k] for k in cols])
                for f in votes:
                    d.run("INSERT INTO feedback (message_id, score, reason, created) VALUES (?,?,?,?)"
                          " ON CONFLICT (message_id) DO NOTHING",
                          [f[k] for k in ("message_id", "score", "reason", "created")])
            if progress is not None:
                progress("conversations", i, len(convs))
        return len(convs)
    finally:
        src.close()


def _count(database: db.Database, table: str) -> int:
    try:
        with database.read() as c:
            row = c.one(f"SELECT count(*) AS n FROM {table}")  # our own table names only
        return int(row["n"]) if row else 0
    finally:
        database.close()
