"""The SQLite store (WAL): the default, a single file under ZHIKU_HOME that one machine's processes share.

Full-text search is FTS5 over jieba-segmented text (one FTS5 table per knowledge base, see fts.py for the
pruning that keeps BM25 fast on big bases); dense search is exact or a usearch HNSW file (dense.py).
Originals stay in the knowledge base's folder (files/<sha256>/<name>), written by the ingestion pipeline.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from zhiku import db
from zhiku.embed.base import Vectors
from zhiku.kb import segment
from zhiku.kb.store import (
    ChunkRow,
    Ids,
    KBRecord,
    NewChunk,
    NewDocument,
    Pending,
    Scored,
    StoreConflict,
    bm25_relevance,
)
from zhiku.kb.stores.sqlite import fts
from zhiku.kb.stores.sqlite.dense import Dense
from zhiku.kb.stores.sqlite.rebuild import SQLiteRebuilds, embedding_lock
from zhiku.kb.stores.sqlite.schema import OWNER
from zhiku.kb.types import DocInfo, DocumentNotFound, KBExists, KBNotFound, Progress


def fts_table(kb: KBRecord) -> str:
    # The id is an integer from our own table, never user text: safe to put in the identifier.
    return f"chunk_fts_{int(kb.id)}"


def _kb(row: sqlite3.Row) -> KBRecord:
    return KBRecord(id=row["id"], name=row["name"], description=row["description"], embedder=row["embedder"],
                    dim=row["dim"], chunk_size=row["chunk_size"], chunk_overlap=row["chunk_overlap"],
                    title_enhance=bool(row["title_enhance"]), created=row["created"],
                    expires_at=row["expires_at"], revision=row["revision"], vector_epoch=row["vector_epoch"])


def _doc(row: sqlite3.Row, kb: KBRecord) -> DocInfo:
    return DocInfo(id=row["id"], kb=kb.name, path=row["path"], sha256=row["sha256"], loader=row["loader"],
                   status=row["status"], error=row["error"], chunk_count=row["chunk_count"], size=row["size"],
                   added=row["added"])


def _blobs_to_matrix(blobs: list[bytes], dim: int) -> Vectors:
    if not blobs:
        return np.empty((0, dim), dtype=np.float32)
    out: Vectors = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dim).astype(np.float32)
    return out


class SQLiteStore:
    """SQLite implementation: one connection per thread (sqlite3 connections are not shared across threads)."""

    concurrent_searches = False  # in-process and sub-millisecond to 20 ms: a thread hand-off would not pay

    def __init__(self, path: Path, folder_of: Callable[[KBRecord], Path] | None = None,
                 ann_threshold: int = 50_000, threads: int = 0) -> None:
        self.path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._chunk_counts: dict[int, tuple[tuple[int, float, int], int]] = {}
        self.dense = Dense(self, folder_of or (lambda kb: path.parent / "kb" / kb.name), ann_threshold, threads)
        self.rebuilds = SQLiteRebuilds(self)  # kb rebuild through the queue (rebuild.py)

    @property
    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = db.connect(self.path, OWNER)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        self.dense.close()
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.ProgrammingError:  # closed from another thread's perspective; nothing to do
                pass
        self._local = threading.local()

    # ---- knowledge bases -------------------------------------------------------------------------

    def create_kb(self, rec: KBRecord) -> KBRecord:
        try:
            with db.transaction(self.conn) as c:
                cur = c.execute(
                    "INSERT INTO knowledge_base (name, description, embedder, dim, chunk_size, chunk_overlap,"
                    " title_enhance, created, expires_at) VALUES (?,?,?,?,?,?,?,?,?)",
                    (rec.name, rec.description, rec.embedder, rec.dim, rec.chunk_size, rec.chunk_overlap,
                     int(rec.title_enhance), rec.created, rec.expires_at))
                rec.id = int(cur.lastrowid or 0)
                c.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts_table(rec)} USING fts5("
                          "tokens, tokenize='porter unicode61 remove_diacritics 2')")
        except sqlite3.IntegrityError as e:
            raise KBExists(f"knowledge base '{rec.name}' already exists") from e
        return rec

    def get_kb(self, name: str) -> KBRecord:
        row = self.conn.execute("SELECT * FROM knowledge_base WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise KBNotFound(f"knowledge base '{name}' not found")
        return _kb(row)

    def list_kbs(self) -> list[KBRecord]:
        return [_kb(r) for r in self.conn.execute("SELECT * FROM knowledge_base ORDER BY name")]

    def counts(self, kb: KBRecord) -> tuple[int, int]:
        row = self.conn.execute("SELECT count(*), coalesce(sum(chunk_count), 0) FROM document WHERE kb_id = ?",
                                (kb.id,)).fetchone()
        return int(row[0]), int(row[1])

    def _chunk_count(self, kb: KBRecord) -> int:
        """counts(kb)[1], remembered per revision: summing over 100k documents costs ms on every search."""
        key = (kb.id, kb.created, kb.revision)
        known = self._chunk_counts.get(kb.id)
        if known is None or known[0] != key:
            known = self._chunk_counts[kb.id] = (key, self.counts(kb)[1])
        return known[1]

    def delete_kb(self, kb: KBRecord) -> None:
        with db.transaction(self.conn) as c:
            c.execute("DELETE FROM chunk WHERE kb_id = ?", (kb.id,))
            c.execute("DELETE FROM embed_rate WHERE kb_id = ?", (kb.id,))
            c.execute("DELETE FROM document WHERE kb_id = ?", (kb.id,))
            c.execute("DELETE FROM knowledge_base WHERE id = ?", (kb.id,))
            c.execute(f"DROP TABLE IF EXISTS {fts_table(kb)}")
        self.dense.forget(kb, remove_files=True)

    def set_description(self, kb: KBRecord, description: str) -> None:
        with db.transaction(self.conn) as c:
            c.execute("UPDATE knowledge_base SET description = ? WHERE id = ?", (description, kb.id))

    def expired(self, now: float) -> list[KBRecord]:
        rows = self.conn.execute("SELECT * FROM knowledge_base WHERE expires_at IS NOT NULL AND expires_at <= ?",
                                 (now,))
        return [_kb(r) for r in rows]

    # ---- documents -------------------------------------------------------------------------------

    def documents(self, kb: KBRecord) -> list[DocInfo]:
        rows = self.conn.execute("SELECT * FROM document WHERE kb_id = ? ORDER BY path", (kb.id,))
        return [_doc(r, kb) for r in rows]

    def document(self, kb: KBRecord, doc_id: int) -> DocInfo:
        row = self.conn.execute("SELECT * FROM document WHERE kb_id = ? AND id = ?", (kb.id, doc_id)).fetchone()
        if row is None:
            raise DocumentNotFound(f"document {doc_id} not found in knowledge base '{kb.name}'")
        return _doc(row, kb)

    def document_by_path(self, kb: KBRecord, path: str) -> DocInfo | None:
        row = self.conn.execute("SELECT * FROM document WHERE kb_id = ? AND path = ?", (kb.id, path)).fetchone()
        return _doc(row, kb) if row else None

    def put_document(self, kb: KBRecord, doc: NewDocument, chunks: Sequence[NewChunk],
                     vectors: Vectors | None, if_changed: bool = False) -> DocInfo:
        """Insert or replace (same path) a document with its chunks, vectors and full-text rows, atomically.
        Without vectors the chunks wait in the embedding queue (an empty vector)."""
        if vectors is not None and len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        blobs = [b""] * len(chunks)
        if vectors is not None and len(chunks):
            vecs = np.ascontiguousarray(vectors, dtype="<f4")
            if vecs.shape[1] != kb.dim:
                raise ValueError(f"vectors are {vecs.shape[1]}-d, knowledge base '{kb.name}' holds {kb.dim}-d")
            blobs = [v.tobytes() for v in vecs]
        # Segmenting is CPU work: do it before taking the write lock.
        fts_texts = [c.fts if c.fts is not None else self.index_form(c.text) for c in chunks]
        fts = fts_table(kb)
        now = time.time()
        with db.transaction(self.conn) as c:
            row = c.execute("SELECT * FROM document WHERE kb_id = ? AND path = ?", (kb.id, doc.path)).fetchone()
            doc.refuse_unchanged(None if row is None else str(row["sha256"]), if_changed)
            if row is not None:
                doc_id = int(row["id"])
                c.execute(f"DELETE FROM {fts} WHERE rowid IN (SELECT id FROM chunk WHERE document_id = ?)",
                          (doc_id,))
                c.execute("DELETE FROM chunk WHERE document_id = ?", (doc_id,))
                c.execute("UPDATE document SET sha256=?, loader=?, status=?, error=?, chunk_count=?, size=?, added=?"
                          " WHERE id = ?", (doc.sha256, doc.loader, doc.status, doc.error, len(chunks), doc.size,
                                            now, doc_id))
            else:
                cur = c.execute("INSERT INTO document (kb_id, path, sha256, loader, status, error, chunk_count, size,"
                                " added) VALUES (?,?,?,?,?,?,?,?,?)",
                                (kb.id, doc.path, doc.sha256, doc.loader, doc.status, doc.error, len(chunks),
                                 doc.size, now))
                doc_id = int(cur.lastrowid or 0)
            ids: list[int] = []
            for i, ch in enumerate(chunks):
                cur = c.execute("INSERT INTO chunk (document_id, kb_id, ordinal, text, metadata, vector)"
                                " VALUES (?,?,?,?,?,?)",
                                (doc_id, kb.id, i, ch.text, json.dumps(ch.metadata, ensure_ascii=False),
                                 blobs[i]))
                ids.append(int(cur.lastrowid or 0))
            c.executemany(f"INSERT INTO {fts} (rowid, tokens) VALUES (?, ?)", zip(ids, fts_texts, strict=True))
            c.execute("UPDATE knowledge_base SET revision = revision + 1 WHERE id = ?", (kb.id,))
            out = c.execute("SELECT * FROM document WHERE id = ?", (doc_id,)).fetchone()
        return _doc(out, kb)

    def delete_document(self, kb: KBRecord, doc_id: int) -> None:
        with db.transaction(self.conn) as c:
            if c.execute("SELECT 1 FROM document WHERE kb_id = ? AND id = ?", (kb.id, doc_id)).fetchone() is None:
                raise DocumentNotFound(f"document {doc_id} not found in knowledge base '{kb.name}'")
            c.execute(f"DELETE FROM {fts_table(kb)} WHERE rowid IN (SELECT id FROM chunk WHERE document_id = ?)",
                      (doc_id,))
            c.execute("DELETE FROM chunk WHERE document_id = ?", (doc_id,))
            c.execute("DELETE FROM document WHERE id = ?", (doc_id,))
            c.execute("UPDATE knowledge_base SET revision = revision + 1 WHERE id = ?", (kb.id,))

    # ---- chunks and vectors ----------------------------------------------------------------------

    def chunks(self, kb: KBRecord, doc_id: int) -> list[ChunkRow]:
        doc = self.document(kb, doc_id)
        rows = self.conn.execute("SELECT id, ordinal, text, metadata FROM chunk WHERE document_id = ? ORDER BY ordinal",
                                 (doc_id,))
        return [ChunkRow(r["id"], doc_id, doc.path, r["ordinal"], r["text"], json.loads(r["metadata"])) for r in rows]

    def chunk_texts(self, kb: KBRecord) -> tuple[Ids, list[str]]:
        rows = self.conn.execute("SELECT id, text FROM chunk WHERE kb_id = ? ORDER BY id", (kb.id,)).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]

    def replace_vectors(self, kb: KBRecord, ids: Ids, vectors: Vectors, embedder: str, dim: int) -> None:
        """Swap every vector (and the recorded embedder) in one transaction; refuses if chunks changed meanwhile."""
        vecs = np.ascontiguousarray(vectors, dtype="<f4")
        with db.transaction(self.conn) as c:
            current = {r[0] for r in c.execute("SELECT id FROM chunk WHERE kb_id = ?", (kb.id,))}
            if current != set(ids.tolist()):
                raise StoreConflict("the knowledge base changed during the rebuild; run it again")
            c.executemany("UPDATE chunk SET vector = ? WHERE id = ?",
                          ((vecs[i].tobytes(), int(cid)) for i, cid in enumerate(ids)))
            c.execute("UPDATE knowledge_base SET embedder = ?, dim = ?, revision = revision + 1,"
                      " vector_epoch = vector_epoch + 1 WHERE id = ?", (embedder, dim, kb.id))
        self.dense.forget(kb, remove_files=True)

    def chunk_ids(self, kb: KBRecord, embedded: bool = False) -> Ids:
        """Every chunk's id, or only those with a vector (what the ANN index holds)."""
        only = " AND length(vector) > 0" if embedded else ""
        rows = self.conn.execute(f"SELECT id FROM chunk WHERE kb_id = ?{only} ORDER BY id", (kb.id,)).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    # ---- the embedding queue ---------------------------------------------------------------------

    def waiting_count(self, kb: KBRecord) -> int:
        return int(self.conn.execute("SELECT count(*) FROM chunk WHERE kb_id = ? AND length(vector) = 0",
                                     (kb.id,)).fetchone()[0])

    def waiting_kbs(self) -> list[KBRecord]:
        return [_kb(r) for r in self.conn.execute(
            "SELECT * FROM knowledge_base k WHERE EXISTS (SELECT 1 FROM chunk c WHERE c.kb_id = k.id AND"
            " length(c.vector) = 0) ORDER BY k.id")]

    @contextmanager
    def claim_pending(self, kb: KBRecord, n: int) -> Iterator[Pending | None]:
        """The first `n` waiting chunks, while this process holds the database's embedding lock file (one
        embedding process at a time: a second one gets None; the lock goes with its holder, even killed)."""
        with embedding_lock(self.path) as mine:
            if not mine:
                yield None
                return
            rows = self.conn.execute("SELECT id, text FROM chunk WHERE kb_id = ? AND length(vector) = 0"
                                     " ORDER BY id LIMIT ?", (kb.id, n)).fetchall()
            ids = [int(r[0]) for r in rows]

            def save(vectors: Vectors) -> int:
                vecs = np.ascontiguousarray(vectors, dtype="<f4")
                with db.transaction(self.conn) as c:
                    now = c.execute("SELECT embedder, dim, vector_epoch FROM knowledge_base WHERE id = ?",
                                    (kb.id,)).fetchone()
                    if now is None or tuple(now) != (kb.embedder, kb.dim, kb.vector_epoch):
                        return 0  # deleted or rebuilt with another embedder meanwhile: these vectors are stale
                    stored = sum(c.execute("UPDATE chunk SET vector = ? WHERE id = ? AND length(vector) = 0",
                                           (vecs[i].tobytes(), cid)).rowcount for i, cid in enumerate(ids))
                    c.execute("UPDATE knowledge_base SET revision = revision + 1 WHERE id = ?", (kb.id,))
                return int(stored)

            yield Pending(kb, ids, [r[1] for r in rows], save) if ids else None

    def set_rate(self, kb: KBRecord, chunks_per_s: float) -> None:
        with db.transaction(self.conn) as c:
            c.execute("INSERT INTO embed_rate (kb_id, chunks_per_s, updated) SELECT id, ?, ? FROM knowledge_base"
                      " WHERE id = ? ON CONFLICT (kb_id) DO UPDATE SET chunks_per_s = excluded.chunks_per_s,"
                      " updated = excluded.updated", (chunks_per_s, time.time(), kb.id))  # none if just deleted

    def rate(self, kb: KBRecord) -> float | None:
        row = self.conn.execute("SELECT chunks_per_s FROM embed_rate WHERE kb_id = ?", (kb.id,)).fetchone()
        return float(row[0]) if row else None

    def vectors(self, kb: KBRecord, doc_ids: Sequence[int] | None = None,
                chunk_ids: Ids | None = None) -> tuple[Ids, Ids, Vectors]:
        """(chunk ids, document ids, vectors) of a knowledge base, optionally only some documents or chunks."""
        if chunk_ids is not None:
            rows: list[Any] = []
            for part in _batches([int(x) for x in chunk_ids], 900):
                q = ",".join("?" * len(part))
                rows += self.conn.execute(f"SELECT id, document_id, vector FROM chunk WHERE id IN ({q})"
                                          " AND kb_id = ?", (*part, kb.id)).fetchall()
        elif doc_ids is not None:
            q = ",".join("?" * len(doc_ids))
            rows = self.conn.execute(f"SELECT id, document_id, vector FROM chunk WHERE kb_id = ? AND document_id"
                                     f" IN ({q}) ORDER BY id", (kb.id, *doc_ids)).fetchall()
        else:
            rows = self.conn.execute("SELECT id, document_id, vector FROM chunk WHERE kb_id = ? ORDER BY id",
                                     (kb.id,)).fetchall()
        rows = [r for r in rows if len(r[2]) == kb.dim * 4]  # queued chunks wait; see service._search too
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        docs = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        return ids, docs, _blobs_to_matrix([r[2] for r in rows], kb.dim)

    # ---- search ----------------------------------------------------------------------------------

    def index_form(self, text: str) -> str:
        """What FTS5 indexes: CJK runs cut by jieba and re-joined with spaces (FTS5 does the rest)."""
        return segment.for_index(text)

    def text_search(self, kb: KBRecord, query: str, k: int, doc_ids: Sequence[int] | None = None) -> Scored:
        return [(cid, bm25_relevance(raw)) for cid, raw in self.bm25(kb, segment.query_terms(query), k, doc_ids)]

    def bm25(self, kb: KBRecord, terms: Sequence[str], k: int,
             doc_ids: Sequence[int] | None = None) -> list[tuple[int, float]]:
        """Top-k (chunk id, BM25 score >= 0) for chunks holding any of `terms` (FTS5: k1=1.2, b=0.75)."""
        if not terms:
            return []
        table = fts_table(kb)
        try:
            if doc_ids is not None:
                in_docs = (f"rowid IN (SELECT id FROM chunk WHERE document_id IN ({','.join('?' * len(doc_ids))}))",
                           list(doc_ids))
                return fts.exact(self.conn, table, terms, k, in_docs)
            return fts.top_k(self.conn, table, terms, k, self._chunk_count(kb))
        except sqlite3.OperationalError as e:  # a term FTS5 cannot parse: no full-text hits, not a failure
            if "fts5" in str(e).lower() or "syntax" in str(e).lower():
                return []
            raise

    def vector_search(self, kb: KBRecord, query: Vectors, k: int, doc_ids: Sequence[int] | None = None) -> Scored:
        return self.dense.search(kb, query, k, doc_ids)

    def prepare(self, kb: KBRecord, progress: Progress | None = None) -> None:
        self.dense.prepare(self.get_kb(kb.name), progress)

    def load_original(self, kb: KBRecord, doc: DocInfo, dest: Path) -> bool:
        """Originals live in the knowledge base's folder here, written by ingestion: nothing to load."""
        return dest.is_file()

    def fetch(self, kb: KBRecord, chunk_ids: Sequence[int]) -> dict[int, ChunkRow]:
        out: dict[int, ChunkRow] = {}
        for part in _batches(list(chunk_ids), 900):
            q = ",".join("?" * len(part))
            rows = self.conn.execute(
                "SELECT c.id, c.document_id, c.ordinal, c.text, c.metadata, d.path FROM chunk c"
                f" JOIN document d ON d.id = c.document_id WHERE c.id IN ({q}) AND c.kb_id = ?",
                (*part, kb.id))
            for r in rows:
                out[r[0]] = ChunkRow(r[0], r[1], r[5], r[2], r[3], json.loads(r[4]))
        return out

    # ---- checks (tests, `zhiku kb show --check`) -------------------------------------------------

    def check(self, kb: KBRecord) -> dict[str, Any]:
        """Consistency of one knowledge base: FTS5 integrity and, per document, chunks/vectors/fts rows."""
        c = self.conn
        fts = fts_table(kb)
        c.execute(f"INSERT INTO {fts} ({fts}) VALUES ('integrity-check')")
        bad: list[str] = []
        for d in c.execute("SELECT id, path, chunk_count FROM document WHERE kb_id = ?", (kb.id,)).fetchall():
            n, nvec = c.execute("SELECT count(*), sum(length(vector) IN (?, 0)) FROM chunk WHERE document_id = ?",
                                (kb.dim * 4, d["id"])).fetchone()  # a vector, or none yet (queued)
            nfts = c.execute(f"SELECT count(*) FROM {fts} WHERE rowid IN (SELECT id FROM chunk WHERE document_id=?)",
                             (d["id"],)).fetchone()[0]
            if not (n == d["chunk_count"] == (nvec or 0) == nfts):
                bad.append(f"{d['path']}: {d['chunk_count']} chunks recorded, {n} rows, {nvec} vectors, {nfts} fts")
        orphans = c.execute(f"SELECT count(*) FROM {fts} WHERE rowid NOT IN (SELECT id FROM chunk)").fetchone()[0]
        return {"documents_incomplete": bad, "orphan_fts_rows": int(orphans)}


def _batches(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
