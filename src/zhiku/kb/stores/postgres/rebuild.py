"""Rebuilds on PostgreSQL (kb/store.py's Rebuilds): the new vectors wait in `rebuild_vector` beside the old
ones until every chunk has one, then one transaction moves them into `chunk` and records the new embedder.

Every process takes work from the rebuild as from the embedding queue (`FOR UPDATE SKIP LOCKED` on the
chunks, held until the batch's vectors are saved): N processes share it and no chunk is embedded twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

import numpy as np

from zhiku.embed.base import Vectors
from zhiku.kb.store import KBRecord, Pending
from zhiku.kb.stores.postgres import search


class RebuildingStore(Protocol):
    """What a rebuild uses of the PostgreSQL store (which implements it)."""

    def _conn(self) -> AbstractContextManager[Any]: ...

    def _write(self, kb: KBRecord) -> AbstractContextManager[Any]: ...

    def list_kbs(self) -> list[KBRecord]: ...

_MISSING = ("SELECT EXISTS (SELECT 1 FROM chunk c WHERE c.kb_id = %s AND NOT EXISTS (SELECT 1 FROM rebuild_vector r"
            " WHERE r.chunk_id = c.id))")


class PostgresRebuilds:
    def __init__(self, store: RebuildingStore) -> None:
        self.store = store

    def start(self, kb: KBRecord, embedder: str, dim: int) -> None:
        with self.store._write(kb) as conn:  # under the knowledge base's row lock
            now = conn.execute("SELECT embedder, dim FROM rebuild WHERE kb_id = %s", (kb.id,)).fetchone()
            if now is not None and tuple(now) == (embedder, dim):
                return  # under way already: resumed, nothing embedded is thrown away
            conn.execute("DELETE FROM rebuild_vector WHERE kb_id = %s", (kb.id,))
            conn.execute("INSERT INTO rebuild (kb_id, embedder, dim, started) VALUES (%s, %s, %s, %s) ON CONFLICT"
                         " (kb_id) DO UPDATE SET embedder = excluded.embedder, dim = excluded.dim,"
                         " started = excluded.started", (kb.id, embedder, dim, time.time()))
            conn.execute("DELETE FROM embed_rate WHERE kb_id = %s", (kb.id,))  # the old speed says nothing now

    def target(self, kb: KBRecord) -> tuple[str, int] | None:
        with self.store._conn() as conn:
            row = conn.execute("SELECT embedder, dim FROM rebuild WHERE kb_id = %s", (kb.id,)).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def done(self, kb: KBRecord) -> int:
        with self.store._conn() as conn:
            return int(conn.execute("SELECT count(*) FROM rebuild_vector WHERE kb_id = %s", (kb.id,)).fetchone()[0])

    def kbs(self) -> list[KBRecord]:
        with self.store._conn() as conn:
            ids = {int(r[0]) for r in conn.execute("SELECT kb_id FROM rebuild")}
        return [k for k in self.store.list_kbs() if k.id in ids] if ids else []

    @contextmanager
    def claim(self, kb: KBRecord, n: int) -> Iterator[Pending | None]:
        with self.store._conn() as conn, conn.transaction():
            row = conn.execute("SELECT embedder, dim FROM rebuild WHERE kb_id = %s", (kb.id,)).fetchone()
            if row is None:
                yield None
                return
            target = (str(row[0]), int(row[1]))
            rows = conn.execute("SELECT c.id, c.text FROM chunk c WHERE c.kb_id = %s AND NOT EXISTS (SELECT 1 FROM"
                                " rebuild_vector r WHERE r.chunk_id = c.id) ORDER BY c.id LIMIT %s"
                                " FOR UPDATE OF c SKIP LOCKED", (kb.id, n)).fetchall()
            ids = [int(r[0]) for r in rows]

            def save(vectors: Vectors) -> int:
                vecs = np.ascontiguousarray(vectors, dtype=np.float32)
                if vecs.shape[1] != target[1]:
                    raise ValueError(f"vectors are {vecs.shape[1]}-d, the rebuild's embedder gives {target[1]}-d")
                now = conn.execute("SELECT embedder, dim FROM rebuild WHERE kb_id = %s FOR SHARE",
                                   (kb.id,)).fetchone()
                if now is None or (str(now[0]), int(now[1])) != target:
                    return 0  # the rebuild was cancelled or restarted with another embedder meanwhile
                with conn.cursor() as cur:  # the chunks are locked: none was deleted meanwhile
                    cur.executemany("INSERT INTO rebuild_vector (chunk_id, kb_id, embedding) VALUES (%s, %s, %s)"
                                    " ON CONFLICT (chunk_id) DO NOTHING",
                                    [(cid, kb.id, vecs[i]) for i, cid in enumerate(ids)])
                return len(ids)

            yield Pending(kb, ids, [r[1] for r in rows], save) if ids else None

    def finish(self, kb: KBRecord) -> bool:
        with self.store._conn() as conn:
            if conn.execute(_MISSING, (kb.id,)).fetchone()[0] or not conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM rebuild WHERE kb_id = %s)", (kb.id,)).fetchone()[0]:
                return False
            # The HNSW index holds the old vectors (and their dimension): searches are exact until prepare()
            # builds the new one. Dropped concurrently first, so that the switch below locks the table briefly.
            search.drop_index(conn, kb.id)
        with self.store._write(kb) as conn:
            target = conn.execute("SELECT embedder, dim FROM rebuild WHERE kb_id = %s FOR UPDATE",
                                  (kb.id,)).fetchone()
            if target is None or conn.execute(_MISSING, (kb.id,)).fetchone()[0]:
                return False  # another process switched, or a chunk came in meanwhile
            conn.execute(f"DROP INDEX IF EXISTS {search.index_name(kb.id)}")  # if built again meanwhile
            conn.execute("UPDATE chunk c SET embedding = r.embedding FROM rebuild_vector r WHERE r.chunk_id = c.id"
                         " AND c.kb_id = %s", (kb.id,))
            conn.execute("UPDATE knowledge_base SET embedder = %s, dim = %s, vector_epoch = vector_epoch + 1"
                         " WHERE id = %s", (target[0], target[1], kb.id))
            conn.execute("DELETE FROM rebuild_vector WHERE kb_id = %s", (kb.id,))
            conn.execute("DELETE FROM rebuild WHERE kb_id = %s", (kb.id,))
        return True
