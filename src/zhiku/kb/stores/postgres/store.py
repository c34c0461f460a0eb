"""The PostgreSQL + pgvector store: one database that any number of zhiku processes share.

Nothing is cached in the process: every search reads the database, so a document committed or deleted
through one process is what the next search of every other process sees. Writers of one knowledge base
take its row lock first (`UPDATE knowledge_base ... revision + 1`), so concurrent ingestions from several
processes serialise per knowledge base and keep the BM25 statistics exact; each file is one transaction.
Originals are kept in the database (table `original`) so that any process can serve and re-index them;
the knowledge base's local folder is only a copy.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from zhiku import db
from zhiku.embed.base import Vectors
from zhiku.kb.store import ChunkRow, Ids, KBRecord, NewChunk, NewDocument, Pending, Scored, StoreConflict
from zhiku.kb.stores.postgres import search, text
from zhiku.kb.stores.postgres.rebuild import PostgresRebuilds
from zhiku.kb.stores.postgres.schema import OWNER
from zhiku.kb.types import DocInfo, DocumentNotFound, KBExists, KBNotFound, Progress

log = logging.getLogger(__name__)
_KB_COLS = ("id, name, description, embedder, dim, chunk_size, chunk_overlap, title_enhance, created, expires_at,"
            " revision, vector_epoch")
_DOC_COLS = "id, path, sha256, loader, status, error, chunk_count, size, added"
# Lexeme counts of one document's chunks, for the BM25 statistics.
_DOC_LEXEMES = ("SELECT u.lexeme, count(*) AS n FROM chunk c CROSS JOIN LATERAL unnest(c.tsv) u"
                " WHERE c.document_id = %s GROUP BY u.lexeme")


def _kb(r: Sequence[Any]) -> KBRecord:
    return KBRecord(id=r[0], name=r[1], description=r[2], embedder=r[3], dim=r[4], chunk_size=r[5],
                    chunk_overlap=r[6], title_enhance=bool(r[7]), created=r[8], expires_at=r[9], revision=r[10],
                    vector_epoch=r[11])


def _doc(r: Sequence[Any], kb: KBRecord) -> DocInfo:
    return DocInfo(id=r[0], kb=kb.name, path=r[1], sha256=r[2], loader=r[3], status=r[4], error=r[5],
                   chunk_count=r[6], size=r[7], added=r[8])


def _drop_unreferenced_original(conn: Any, kb: KBRecord, sha256: str, path: str) -> None:
    """Delete an original that no document of the knowledge base refers to any more (same content and name)."""
    conn.execute("DELETE FROM original o WHERE o.kb_id = %s AND o.sha256 = %s AND o.name = %s AND NOT EXISTS"
                 " (SELECT 1 FROM document d WHERE d.kb_id = o.kb_id AND d.sha256 = o.sha256"
                 " AND regexp_replace(d.path, '^.*/', '') = o.name)", (kb.id, sha256, Path(path).name))


class PostgresStore:
    concurrent_searches = True  # two pooled connections: the server works on BM25 and dense at once

    def __init__(self, url: str) -> None:
        self.url = url
        self.pool = db.postgres_pool(url, OWNER)
        self._indexed: set[tuple[int, int]] = set()  # see search.dense
        self.rebuilds = PostgresRebuilds(self)  # kb rebuild through the queue (rebuild.py)

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        """A pooled connection within the operation's deadline (db.pooled); a lost server is a 503."""
        with db.pooled(self.pool) as conn:
            yield conn

    @contextmanager
    def _write(self, kb: KBRecord) -> Iterator[Any]:
        """A transaction holding the knowledge base's row lock (and bumping its revision)."""
        with self._conn() as conn, conn.transaction():
            if conn.execute("UPDATE knowledge_base SET revision = revision + 1 WHERE id = %s RETURNING id",
                            (kb.id,)).fetchone() is None:
                raise KBNotFound(f"knowledge base '{kb.name}' not found")
            yield conn

    def close(self) -> None:
        """The pool is shared by the process (see zhiku.db) and closed with it."""

    # ---- knowledge bases -------------------------------------------------------------------------

    def create_kb(self, rec: KBRecord) -> KBRecord:
        import psycopg

        try:
            with self._conn() as conn, conn.transaction():
                row = conn.execute(
                    "INSERT INTO knowledge_base (name, description, embedder, dim, chunk_size, chunk_overlap,"
                    " title_enhance, created, expires_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
                    (rec.name, rec.description, rec.embedder, rec.dim, rec.chunk_size, rec.chunk_overlap,
                     rec.title_enhance, rec.created, rec.expires_at)).fetchone()
                rec.id = int(row[0])
        except psycopg.errors.UniqueViolation as e:
            raise KBExists(f"knowledge base '{rec.name}' already exists") from e
        return rec

    def get_kb(self, name: str) -> KBRecord:
        with self._conn() as conn:
            row = conn.execute(f"SELECT {_KB_COLS} FROM knowledge_base WHERE name = %s", (name,)).fetchone()
        if row is None:
            raise KBNotFound(f"knowledge base '{name}' not found")
        return _kb(row)

    def list_kbs(self) -> list[KBRecord]:
        with self._conn() as conn:
            return [_kb(r) for r in conn.execute(f"SELECT {_KB_COLS} FROM knowledge_base ORDER BY name")]

    def counts(self, kb: KBRecord) -> tuple[int, int]:
        with self._conn() as conn:
            row = conn.execute("SELECT count(*), coalesce(sum(chunk_count), 0) FROM document WHERE kb_id = %s",
                               (kb.id,)).fetchone()
        return int(row[0]), int(row[1])

    def delete_kb(self, kb: KBRecord) -> None:
        with self._conn() as conn:
            with conn.transaction():
                conn.execute("DELETE FROM chunk WHERE kb_id = %s", (kb.id,))
                conn.execute("DELETE FROM knowledge_base WHERE id = %s", (kb.id,))  # documents etc. cascade
            search.drop_index(conn, kb.id)

    def set_description(self, kb: KBRecord, description: str) -> None:
        with self._conn() as conn:
            conn.execute("UPDATE knowledge_base SET description = %s WHERE id = %s", (description, kb.id))

    def expired(self, now: float) -> list[KBRecord]:
        with self._conn() as conn:
            rows = conn.execute(f"SELECT {_KB_COLS} FROM knowledge_base WHERE expires_at IS NOT NULL"
                                " AND expires_at <= %s", (now,)).fetchall()
        return [_kb(r) for r in rows]

    # ---- documents -------------------------------------------------------------------------------

    def documents(self, kb: KBRecord) -> list[DocInfo]:
        with self._conn() as conn:
            rows = conn.execute(f"SELECT {_DOC_COLS} FROM document WHERE kb_id = %s ORDER BY path", (kb.id,))
            return [_doc(r, kb) for r in rows]

    def document(self, kb: KBRecord, doc_id: int) -> DocInfo:
        with self._conn() as conn:
            row = conn.execute(f"SELECT {_DOC_COLS} FROM document WHERE kb_id = %s AND id = %s",
                               (kb.id, doc_id)).fetchone()
        if row is None:
            raise DocumentNotFound(f"document {doc_id} not found in knowledge base '{kb.name}'")
        return _doc(row, kb)

    def document_by_path(self, kb: KBRecord, path: str) -> DocInfo | None:
        with self._conn() as conn:
            row = conn.execute(f"SELECT {_DOC_COLS} FROM document WHERE kb_id = %s AND path = %s",
                               (kb.id, path)).fetchone()
        return _doc(row, kb) if row else None

    def put_document(self, kb: KBRecord, doc: NewDocument, chunks: Sequence[NewChunk],
                     vectors: Vectors | None, if_changed: bool = False) -> DocInfo:
        """Insert or replace (same path) a document with its chunks, vectors, lexemes and original, atomically.
        Without vectors the chunks wait in the embedding queue (a NULL embedding)."""
        if vectors is not None and len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        vecs: list[Any] = [None] * len(chunks)
        if vectors is not None and len(chunks):
            arr = np.ascontiguousarray(vectors, dtype=np.float32)
            if arr.shape[1] != kb.dim:
                raise ValueError(f"vectors are {arr.shape[1]}-d, knowledge base '{kb.name}' holds {kb.dim}-d")
            vecs = list(arr)
        forms = [text.split_index_form(c.fts if c.fts is not None else self.index_form(c.text)) for c in chunks]
        now = time.time()
        if len(chunks) >= search.BULK_MIN:
            with self._conn() as conn:
                search.before_bulk_insert(conn, kb, len(chunks))
        with self._write(kb) as conn:
            row = conn.execute("SELECT id, sha256 FROM document WHERE kb_id = %s AND path = %s FOR UPDATE",
                               (kb.id, doc.path)).fetchone()
            # Under the base's row lock (_write): a writer that stored this content meanwhile is seen here.
            doc.refuse_unchanged(None if row is None else str(row[1]), if_changed)
            if row is not None:
                doc_id, old_sha = int(row[0]), str(row[1])
                self._forget_chunks(conn, kb, doc_id)
                conn.execute("UPDATE document SET sha256=%s, loader=%s, status=%s, error=%s, chunk_count=%s,"
                             " size=%s, added=%s WHERE id = %s", (doc.sha256, doc.loader, doc.status, doc.error,
                                                                  len(chunks), doc.size, now, doc_id))
                _drop_unreferenced_original(conn, kb, old_sha, doc.path)
            else:
                doc_id = int(conn.execute(
                    "INSERT INTO document (kb_id, path, sha256, loader, status, error, chunk_count, size, added)"
                    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
                    (kb.id, doc.path, doc.sha256, doc.loader, doc.status, doc.error, len(chunks), doc.size,
                     now)).fetchone()[0])
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO chunk (document_id, kb_id, ordinal, text, metadata, embedding, tsv,"
                                " ntok) VALUES (%s,%s,%s,%s,%s,%s,%s::tsvector,%s)",
                                [(doc_id, kb.id, i, ch.text, json.dumps(ch.metadata, ensure_ascii=False), vecs[i],
                                  literal, ntok) for i, (ch, (ntok, literal)) in enumerate(zip(chunks, forms,
                                                                                               strict=True))])
            conn.execute("INSERT INTO term_stats (kb_id, lexeme, df) SELECT %s, lexeme, n FROM (" + _DOC_LEXEMES +
                         ") d ON CONFLICT (kb_id, lexeme) DO UPDATE SET df = term_stats.df + excluded.df",
                         (kb.id, doc_id))
            conn.execute("UPDATE knowledge_base SET chunks = chunks + %s, tokens = tokens + %s WHERE id = %s",
                         (len(chunks), sum(n for n, _ in forms), kb.id))
            self._keep_original(conn, kb, doc)
            out = conn.execute(f"SELECT {_DOC_COLS} FROM document WHERE id = %s", (doc_id,)).fetchone()
        return _doc(out, kb)

    def _forget_chunks(self, conn: Any, kb: KBRecord, doc_id: int) -> None:
        """Take a document's chunks out of the statistics, then delete them (inside the caller's transaction)."""
        conn.execute("UPDATE term_stats t SET df = t.df - d.n FROM (" + _DOC_LEXEMES + ") d"
                     " WHERE t.kb_id = %s AND t.lexeme = d.lexeme", (doc_id, kb.id))
        conn.execute("DELETE FROM term_stats WHERE kb_id = %s AND df <= 0", (kb.id,))
        conn.execute("UPDATE knowledge_base k SET chunks = k.chunks - d.n, tokens = k.tokens - d.t FROM"
                     " (SELECT count(*) AS n, coalesce(sum(ntok), 0) AS t FROM chunk WHERE document_id = %s) d"
                     " WHERE k.id = %s", (doc_id, kb.id))
        conn.execute("DELETE FROM chunk WHERE document_id = %s", (doc_id,))

    def _keep_original(self, conn: Any, kb: KBRecord, doc: NewDocument) -> None:
        if doc.original is None or not doc.original.is_file():
            return
        name = Path(doc.path).name
        if conn.execute("SELECT 1 FROM original WHERE kb_id = %s AND sha256 = %s AND name = %s",
                        (kb.id, doc.sha256, name)).fetchone() is None:
            conn.execute("INSERT INTO original (kb_id, sha256, name, data) VALUES (%s,%s,%s,%s)"
                         " ON CONFLICT DO NOTHING", (kb.id, doc.sha256, name, doc.original.read_bytes()))

    def delete_document(self, kb: KBRecord, doc_id: int) -> None:
        with self._write(kb) as conn:
            row = conn.execute("SELECT sha256, path FROM document WHERE kb_id = %s AND id = %s FOR UPDATE",
                               (kb.id, doc_id)).fetchone()
            if row is None:
                raise DocumentNotFound(f"document {doc_id} not found in knowledge base '{kb.name}'")
            self._forget_chunks(conn, kb, doc_id)
            conn.execute("DELETE FROM document WHERE id = %s", (doc_id,))
            _drop_unreferenced_original(conn, kb, row[0], row[1])

    def load_original(self, kb: KBRecord, doc: DocInfo, dest: Path) -> bool:
        """Copy a document's original from the database to `dest` (atomically); False if it has none."""
        with self._conn() as conn:
            row = conn.execute("SELECT data FROM original WHERE kb_id = %s AND sha256 = %s AND name = %s",
                               (kb.id, doc.sha256, Path(doc.path).name)).fetchone()
        if row is None:
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.load.tmp")
        tmp.write_bytes(bytes(row[0]))
        tmp.replace(dest)
        return True

    # ---- chunks and vectors ----------------------------------------------------------------------

    def chunks(self, kb: KBRecord, doc_id: int) -> list[ChunkRow]:
        doc = self.document(kb, doc_id)
        with self._conn() as conn:
            rows = conn.execute("SELECT id, ordinal, text, metadata FROM chunk WHERE document_id = %s"
                                " ORDER BY ordinal", (doc_id,)).fetchall()
        return [ChunkRow(r[0], doc_id, doc.path, r[1], r[2], json.loads(r[3])) for r in rows]

    def chunk_ids(self, kb: KBRecord) -> Ids:
        with self._conn() as conn:
            rows = conn.execute("SELECT id FROM chunk WHERE kb_id = %s ORDER BY id", (kb.id,)).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def chunk_texts(self, kb: KBRecord) -> tuple[Ids, list[str]]:
        with self._conn() as conn:
            rows = conn.execute("SELECT id, text FROM chunk WHERE kb_id = %s ORDER BY id", (kb.id,)).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64), [r[1] for r in rows]

    def replace_vectors(self, kb: KBRecord, ids: Ids, vectors: Vectors, embedder: str, dim: int) -> None:
        """Swap every vector (and the recorded embedder) in one transaction; refuses if chunks changed meanwhile.
        The HNSW index goes with the old vectors (searches are exact meanwhile); prepare builds the new one."""
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._conn() as conn:
            search.drop_index(conn, kb.id)
        with self._write(kb) as conn:
            current = {r[0] for r in conn.execute("SELECT id FROM chunk WHERE kb_id = %s", (kb.id,))}
            if current != set(ids.tolist()):
                raise StoreConflict("the knowledge base changed during the rebuild; run it again")
            # Only if another process built it again meanwhile: then briefly locks the table (it holds old vectors).
            conn.execute(f"DROP INDEX IF EXISTS {search.index_name(kb.id)}")
            with conn.cursor() as cur:
                cur.executemany("UPDATE chunk SET embedding = %s WHERE id = %s",
                                [(vecs[i], int(cid)) for i, cid in enumerate(ids)])
            conn.execute("UPDATE knowledge_base SET embedder = %s, dim = %s, vector_epoch = vector_epoch + 1"
                         " WHERE id = %s", (embedder, dim, kb.id))

    def fetch(self, kb: KBRecord, chunk_ids: Sequence[int]) -> dict[int, ChunkRow]:
        if not chunk_ids:
            return {}
        with self._conn() as conn:
            rows = conn.execute("SELECT c.id, c.document_id, c.ordinal, c.text, c.metadata, d.path FROM chunk c"
                                " JOIN document d ON d.id = c.document_id WHERE c.id = ANY(%s) AND c.kb_id = %s",
                                (list(chunk_ids), kb.id)).fetchall()
        return {r[0]: ChunkRow(r[0], r[1], r[5], r[2], r[3], json.loads(r[4])) for r in rows}

    # ---- the embedding queue ---------------------------------------------------------------------

    def waiting_count(self, kb: KBRecord) -> int:
        with self._conn() as conn:
            row = conn.execute("SELECT count(*) FROM chunk WHERE kb_id = %s AND embedding IS NULL", (kb.id,)).fetchone()
        return int(row[0])

    def waiting_kbs(self) -> list[KBRecord]:
        with self._conn() as conn:
            return [_kb(r) for r in conn.execute(
                f"SELECT {_KB_COLS} FROM knowledge_base k WHERE EXISTS (SELECT 1 FROM chunk c WHERE c.kb_id = k.id"
                " AND c.embedding IS NULL) ORDER BY k.id")]

    @contextmanager
    def claim_pending(self, kb: KBRecord, n: int) -> Iterator[Pending | None]:
        """The first `n` waiting chunks no other worker holds, locked (FOR UPDATE SKIP LOCKED) in a transaction
        that lasts until their vectors are saved: workers of every process share the queue, and a worker that
        dies lets its chunks go back to it when its connection does."""
        with self._conn() as conn, conn.transaction():
            rows = conn.execute("SELECT id, text FROM chunk WHERE kb_id = %s AND embedding IS NULL ORDER BY id"
                                " LIMIT %s FOR UPDATE SKIP LOCKED", (kb.id, n)).fetchall()
            ids = [int(r[0]) for r in rows]

            def save(vectors: Vectors) -> int:
                now = conn.execute("SELECT embedder, dim, vector_epoch FROM knowledge_base WHERE id = %s",
                                   (kb.id,)).fetchone()
                if now is None or tuple(now) != (kb.embedder, kb.dim, kb.vector_epoch):
                    return 0  # deleted or rebuilt with another embedder meanwhile: these vectors are stale
                vecs = np.ascontiguousarray(vectors, dtype=np.float32)
                with conn.cursor() as cur:
                    cur.executemany("UPDATE chunk SET embedding = %s WHERE id = %s AND embedding IS NULL",
                                    [(vecs[i], cid) for i, cid in enumerate(ids)])
                return len(ids)

            yield Pending(kb, ids, [r[1] for r in rows], save) if ids else None

    def set_rate(self, kb: KBRecord, chunks_per_s: float) -> None:
        with self._conn() as conn:
            conn.execute("INSERT INTO embed_rate (kb_id, chunks_per_s, updated) SELECT id, %s, %s FROM knowledge_base"
                         " WHERE id = %s ON CONFLICT (kb_id) DO UPDATE SET chunks_per_s = excluded.chunks_per_s,"
                         " updated = excluded.updated", (chunks_per_s, time.time(), kb.id))

    def rate(self, kb: KBRecord) -> float | None:
        with self._conn() as conn:
            row = conn.execute("SELECT chunks_per_s FROM embed_rate WHERE kb_id = %s", (kb.id,)).fetchone()
        return float(row[0]) if row else None

    # ---- search ----------------------------------------------------------------------------------

    def index_form(self, text_: str) -> str:
        return text.index_form(text_)

    def text_search(self, kb: KBRecord, query: str, k: int, doc_ids: Sequence[int] | None = None) -> Scored:
        with self._conn() as conn:
            return search.bm25(conn, kb, query, k, doc_ids)

    def vector_search(self, kb: KBRecord, query: Vectors, k: int, doc_ids: Sequence[int] | None = None) -> Scored:
        with self._conn() as conn:
            return search.dense(conn, kb, query, k, doc_ids, self._indexed)

    def prepare(self, kb: KBRecord, progress: Progress | None = None) -> None:
        """After an ingestion: merge the new rows into the full-text index, and build the knowledge base's
        HNSW index once it is big enough (search.ensure_index; the server then keeps it as rows are written).
        A failure is logged, not raised: the documents are stored, searches stay right (exact), and the next
        prepare tries again."""
        import psycopg

        try:
            with self._conn() as conn:
                search.tidy_text_index(conn)
                # The HNSW index is built in one go once every vector is in (far cheaper than row by row).
                if conn.execute("SELECT NOT EXISTS (SELECT 1 FROM chunk WHERE kb_id = %s AND embedding IS NULL)",
                                (kb.id,)).fetchone()[0]:
                    search.ensure_index(conn, kb, progress)
        except psycopg.Error as e:  # a lost server is DatabaseUnavailable (see _conn), raised
            log.warning("could not update the indexes of knowledge base '%s' (searches stay exact): %s", kb.name, e)

    # ---- checks ----------------------------------------------------------------------------------

    def check(self, kb: KBRecord) -> dict[str, Any]:
        """Consistency of one knowledge base: per document chunks/vectors/lexemes, and the BM25 statistics."""
        bad: list[str] = []
        with self._conn() as conn:
            for doc_id, path, count in conn.execute("SELECT id, path, chunk_count FROM document WHERE kb_id = %s",
                                                    (kb.id,)).fetchall():
                n, nvec, ntsv = conn.execute(  # a vector, or none yet (queued)
                    "SELECT count(*), count(*) FILTER (WHERE embedding IS NULL OR vector_dims(embedding) = %s),"
                    " count(*) FILTER (WHERE ntok = 0 OR length(tsv) > 0) FROM chunk WHERE document_id = %s",
                    (kb.dim, doc_id)).fetchone()
                if not (n == count == nvec == ntsv):
                    bad.append(f"{path}: {count} chunks recorded, {n} rows, {nvec} vectors, {ntsv} lexeme sets")
            stale = conn.execute(
                "SELECT count(*) FROM (SELECT u.lexeme, count(*) AS n FROM chunk c CROSS JOIN LATERAL unnest(c.tsv) u"
                " WHERE c.kb_id = %s GROUP BY u.lexeme) d FULL JOIN (SELECT lexeme, df FROM term_stats"
                " WHERE kb_id = %s) t ON t.lexeme = d.lexeme WHERE d.n IS DISTINCT FROM t.df",
                (kb.id, kb.id)).fetchone()[0]
            totals = conn.execute("SELECT k.chunks = (SELECT count(*) FROM chunk WHERE kb_id = k.id) AND k.tokens ="
                                  " (SELECT coalesce(sum(ntok), 0) FROM chunk WHERE kb_id = k.id) FROM knowledge_base k"
                                  " WHERE k.id = %s", (kb.id,)).fetchone()
        if totals is not None and not totals[0]:
            bad.append("knowledge-base totals disagree with its chunks")
        return {"documents_incomplete": bad, "orphan_fts_rows": int(stale)}
