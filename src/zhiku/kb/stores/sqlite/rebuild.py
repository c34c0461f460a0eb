"""Rebuilds on SQLite (kb/store.py's Rebuilds): the new vectors wait in `rebuild_vector` beside the old ones
until every chunk has one, then one transaction moves them into `chunk` and records the new embedder.

Embedding for a rebuild takes the same lock file as the embedding queue: one embedding process at a time.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from zhiku import db
from zhiku.embed.base import Vectors
from zhiku.kb.store import KBRecord, Pending
from zhiku.kb.types import KBNotFound

if TYPE_CHECKING:
    import sqlite3

    from zhiku.kb.stores.sqlite.dense import Dense


class RebuildingStore(Protocol):
    """What a rebuild reads and writes of the SQLite store (which implements it)."""

    path: Path
    dense: Dense

    @property
    def conn(self) -> sqlite3.Connection: ...

    def list_kbs(self) -> list[KBRecord]: ...


@contextmanager
def embedding_lock(database: Path) -> Iterator[bool]:
    """The database's embedding lock file, if no other process holds it (False: another one embeds now).
    The lock goes with its holder, even a killed one."""
    with (database.parent / f"{database.name}.embed.lock").open("a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


class SQLiteRebuilds:
    def __init__(self, store: RebuildingStore) -> None:
        self.store = store

    def start(self, kb: KBRecord, embedder: str, dim: int) -> None:
        with db.transaction(self.store.conn) as c:
            if c.execute("SELECT 1 FROM knowledge_base WHERE id = ?", (kb.id,)).fetchone() is None:
                raise KBNotFound(f"knowledge base '{kb.name}' not found")
            now = c.execute("SELECT embedder, dim FROM rebuild WHERE kb_id = ?", (kb.id,)).fetchone()
            if now is not None and tuple(now) == (embedder, dim):
                return  # under way already: resumed, nothing embedded is thrown away
            c.execute("DELETE FROM rebuild_vector WHERE kb_id = ?", (kb.id,))
            c.execute("INSERT INTO rebuild (kb_id, embedder, dim, started) VALUES (?, ?, ?, ?) ON CONFLICT (kb_id)"
                      " DO UPDATE SET embedder = excluded.embedder, dim = excluded.dim, started = excluded.started",
                      (kb.id, embedder, dim, time.time()))
            c.execute("DELETE FROM embed_rate WHERE kb_id = ?", (kb.id,))  # the old speed says nothing now

    def target(self, kb: KBRecord) -> tuple[str, int] | None:
        row = self.store.conn.execute("SELECT embedder, dim FROM rebuild WHERE kb_id = ?", (kb.id,)).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def done(self, kb: KBRecord) -> int:
        return int(self.store.conn.execute("SELECT count(*) FROM rebuild_vector WHERE kb_id = ?",
                                           (kb.id,)).fetchone()[0])

    def kbs(self) -> list[KBRecord]:
        ids = {int(r[0]) for r in self.store.conn.execute("SELECT kb_id FROM rebuild")}
        return [k for k in self.store.list_kbs() if k.id in ids] if ids else []

    @contextmanager
    def claim(self, kb: KBRecord, n: int) -> Iterator[Pending | None]:
        target = self.target(kb)
        with embedding_lock(self.store.path) as mine:
            if not mine or target is None:
                yield None
                return
            rows = self.store.conn.execute(
                "SELECT c.id, c.text FROM chunk c WHERE c.kb_id = ? AND NOT EXISTS (SELECT 1 FROM rebuild_vector r"
                " WHERE r.chunk_id = c.id) ORDER BY c.id LIMIT ?", (kb.id, n)).fetchall()
            ids = [int(r[0]) for r in rows]

            def save(vectors: Vectors) -> int:
                vecs = np.ascontiguousarray(vectors, dtype="<f4")
                if vecs.shape[1] != target[1]:
                    raise ValueError(f"vectors are {vecs.shape[1]}-d, the rebuild's embedder gives {target[1]}-d")
                with db.transaction(self.store.conn) as c:
                    if self.target(kb) != target:
                        return 0  # the rebuild was cancelled or restarted with another embedder meanwhile
                    return sum(c.execute("INSERT OR IGNORE INTO rebuild_vector (chunk_id, kb_id, vector) SELECT ?, ?, ?"
                                         " WHERE EXISTS (SELECT 1 FROM chunk WHERE id = ?)",  # not deleted meanwhile
                                         (cid, kb.id, vecs[i].tobytes(), cid)).rowcount for i, cid in enumerate(ids))

            yield Pending(kb, ids, [r[1] for r in rows], save) if ids else None

    def finish(self, kb: KBRecord) -> bool:
        with db.transaction(self.store.conn) as c:
            target = c.execute("SELECT embedder, dim FROM rebuild WHERE kb_id = ?", (kb.id,)).fetchone()
            if target is None or c.execute(
                    "SELECT EXISTS (SELECT 1 FROM chunk c WHERE c.kb_id = ? AND NOT EXISTS (SELECT 1 FROM"
                    " rebuild_vector r WHERE r.chunk_id = c.id))", (kb.id,)).fetchone()[0]:
                return False
            c.execute("UPDATE chunk SET vector = (SELECT r.vector FROM rebuild_vector r WHERE r.chunk_id = chunk.id)"
                      " WHERE kb_id = ?", (kb.id,))
            c.execute("UPDATE knowledge_base SET embedder = ?, dim = ?, revision = revision + 1,"
                      " vector_epoch = vector_epoch + 1 WHERE id = ?", (target[0], target[1], kb.id))
            c.execute("DELETE FROM rebuild_vector WHERE kb_id = ?", (kb.id,))
            c.execute("DELETE FROM rebuild WHERE kb_id = ?", (kb.id,))
        self.store.dense.forget(kb, remove_files=True)  # the ANN index held the old vectors
        return True
