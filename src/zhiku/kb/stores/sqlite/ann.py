"""An approximate nearest-neighbour index (usearch HNSW) for knowledge bases above `ann_threshold` chunks.

The index is derived data: persisted under the knowledge-base folder (`ann.usearch` + `ann.json`) and
always reconcilable with the database. Chunk ids are never reused (AUTOINCREMENT), so on open the index's
keys are compared with the database's chunk ids: missing vectors are added, deleted ones removed. A
rebuild that replaces every vector bumps the knowledge base's `vector_epoch`, which discards the file.
usearch saves its own binary format (no pickle).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from zhiku.embed.base import Vectors
from zhiku.kb.store import Ids, KBRecord
from zhiku.kb.types import Progress


class StoredVectors(Protocol):
    """What the dense search and the ANN index read from the SQLite store (which implements it)."""

    def chunk_ids(self, kb: KBRecord, embedded: bool = False) -> Ids: ...

    def vectors(self, kb: KBRecord, doc_ids: Sequence[int] | None = None,
                chunk_ids: Ids | None = None) -> tuple[Ids, Ids, Vectors]: ...

    def counts(self, kb: KBRecord) -> tuple[int, int]: ...

log = logging.getLogger(__name__)

CONNECTIVITY = 16
EXPANSION_ADD = 128
# Search depth, measured on 1M synthetic 384-d vectors (bench/kb.py's, 200 queries, quiet 2-core box):
# recall@10 0.939 at 96, 0.989 at 160 (p50 1.2 ms), 0.9995 at 256 (1.7 ms). At 100k every depth gave 1.0.
EXPANSION_SEARCH = 160
ADD_PART = 20_000  # vectors read from the database and added at a time
SAVE_AFTER_CHANGES = 2_000  # persist after this many incremental changes (and always on close)


def _usearch_index() -> Any:
    """usearch's Index class, imported so that llama.cpp can still load models afterwards.

    usearch's extension carries its own static C++ runtime. Imported into a process where the shared
    libstdc++ is not yet global, it leaves llama.cpp unable to load any model later ("error loading model
    vocabulary: std::bad_cast"): a server whose first big-base search came before its model, `zhiku ask`
    over a big base. With the shared libstdc++ loaded globally first, both use that one.
    """
    import ctypes

    try:
        ctypes.CDLL("libstdc++.so.6", mode=ctypes.RTLD_GLOBAL)
    except OSError:  # no GNU libstdc++ here: nothing to share
        pass
    from usearch.index import Index

    return Index


class AnnIndex:
    def __init__(self, folder: Path, kb: KBRecord, threads: int = 0) -> None:
        Index = _usearch_index()  # noqa: N806 - the class, named as usearch names it
        self.folder = folder
        self.path = folder / "ann.usearch"
        self.meta_path = folder / "ann.json"
        self.kb_id, self.dim, self.epoch, self.embedder = kb.id, kb.dim, kb.vector_epoch, kb.embedder
        self.threads = threads or os.cpu_count() or 1
        self.lock = threading.Lock()
        self.unsaved = 0
        self.index: Any = Index(ndim=kb.dim, metric="cos", dtype="f32", connectivity=CONNECTIVITY,
                                expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH)
        if self._meta_matches():
            try:
                self.index.load(str(self.path))
            except Exception as e:  # a torn or foreign file: it is only derived data, so start over
                log.warning("ANN index %s unreadable (%s); rebuilding from the database", self.path, e)
                self.index.reset()

    def _meta(self) -> dict[str, Any]:
        return {"kb_id": self.kb_id, "dim": self.dim, "epoch": self.epoch, "embedder": self.embedder}

    def _meta_matches(self) -> bool:
        try:
            return bool(self.path.exists() and json.loads(self.meta_path.read_text()) == self._meta())
        except (OSError, ValueError):
            return False

    def __len__(self) -> int:
        return len(self.index)

    def reconcile(self, store: StoredVectors, kb: KBRecord, progress: Progress | None = None) -> int:
        """Bring the index to the database's chunk set; returns the number of keys added or removed.
        `progress("index", done, total)` follows the vectors added (a first build at 1M takes minutes)."""
        db_ids = store.chunk_ids(kb, embedded=True)
        keys = np.asarray(self.index.keys, dtype=np.int64) if len(self.index) else np.empty(0, np.int64)
        extra = np.setdiff1d(keys, db_ids, assume_unique=True)
        missing = np.setdiff1d(db_ids, keys, assume_unique=True)
        if len(extra):
            self.index.remove(extra.astype(np.uint64))
        for start in range(0, len(missing), ADD_PART):
            if progress is not None:
                progress("index", start, len(missing))
            ids, _docs, vecs = store.vectors(kb, chunk_ids=missing[start:start + ADD_PART])
            self.add(ids, vecs)
        if progress is not None and len(missing):
            progress("index", len(missing), len(missing))
        changed = int(len(extra) + len(missing))
        self.unsaved += changed
        if self.unsaved >= SAVE_AFTER_CHANGES or (changed and not self.path.exists()):
            self.save()
        return changed

    def add(self, ids: Ids, vectors: Vectors) -> None:
        if len(ids):
            self.index.add(ids.astype(np.uint64), np.ascontiguousarray(vectors, dtype=np.float32),
                           threads=self.threads)

    def search(self, query: Vectors, k: int) -> tuple[Ids, Vectors]:
        """(chunk ids, cosine similarities), best first."""
        if not len(self.index):
            return np.empty(0, np.int64), np.empty(0, np.float32)
        self.index.expansion_search = max(EXPANSION_SEARCH, 2 * k)
        m = self.index.search(np.ascontiguousarray(query, dtype=np.float32), k)
        ids = np.asarray(m.keys, dtype=np.int64)
        sims = (1.0 - np.asarray(m.distances, dtype=np.float32)).astype(np.float32)
        return ids, sims

    def save(self) -> None:
        """Write atomically: a crash mid-save leaves the previous file (or none), never a torn one in place."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        self.index.save(str(tmp))
        os.replace(tmp, self.path)
        meta_tmp = self.meta_path.with_suffix(".tmp")
        meta_tmp.write_text(json.dumps(self._meta()))
        os.replace(meta_tmp, self.meta_path)
        self.unsaved = 0


def remove_files(folder: Path) -> None:
    for name in ("ann.usearch", "ann.json", "ann.tmp"):
        try:
            (folder / name).unlink()
        except FileNotFoundError:
            pass
