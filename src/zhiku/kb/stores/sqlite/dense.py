"""Dense search for the SQLite store: exact up to `ann_threshold` chunks, an HNSW index (ann.py) above it.

Exact search is one matrix product over an in-memory float32 matrix, cached per knowledge base and
invalidated by its `revision`; the HNSW index is brought up to date right after each ingestion
(`prepare`) rather than on the first search.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zhiku.embed.base import Vectors
from zhiku.kb.store import Ids, KBRecord, Scored
from zhiku.kb.stores.sqlite.ann import AnnIndex, StoredVectors
from zhiku.kb.types import Progress

log = logging.getLogger(__name__)


def top_k(scores: Vectors, k: int) -> Ids:
    """Indices of the k largest scores, best first (argpartition: O(n), not a full sort)."""
    if k >= len(scores):
        order: Ids = np.argsort(-scores, kind="stable").astype(np.int64)
        return order
    part = np.argpartition(-scores, k - 1)[:k]
    out: Ids = part[np.argsort(-scores[part], kind="stable")].astype(np.int64)
    return out


@dataclass
class _Exact:
    key: tuple[int, int]
    ids: Ids
    docs: Ids
    matrix: Vectors


class Dense:
    """Per-process dense state of each knowledge base (exact matrices or ANN indexes)."""

    def __init__(self, store: StoredVectors, folder_of: Callable[[KBRecord], Path], ann_threshold: int,
                 threads: int = 0) -> None:
        self.store = store
        self.folder_of = folder_of
        self.ann_threshold = ann_threshold
        self.threads = threads
        self._exact: dict[int, _Exact] = {}
        self._ann: dict[int, tuple[tuple[int, int], AnnIndex]] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, kb_id: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(kb_id, threading.Lock())

    def forget(self, kb: KBRecord, save: bool = False, remove_files: bool = False) -> None:
        """Drop cached state (after deleting or rebuilding a knowledge base)."""
        with self._lock(kb.id):
            self._exact.pop(kb.id, None)
            entry = self._ann.pop(kb.id, None)
            if entry and save and entry[1].unsaved:
                entry[1].save()
        if remove_files:
            from zhiku.kb.stores.sqlite import ann

            ann.remove_files(self.folder_of(kb))

    def close(self) -> None:
        for kb_id in list(self._ann):
            entry = self._ann.get(kb_id)
            if entry is not None:
                with self._lock(kb_id):
                    if entry[1].unsaved:
                        entry[1].save()
        self._ann.clear()
        self._exact.clear()

    def search(self, kb: KBRecord, qvec: Vectors, k: int, doc_ids: Sequence[int] | None = None) -> Scored:
        q = np.ascontiguousarray(qvec, dtype=np.float32).reshape(-1)
        if doc_ids is not None and self.uses_ann(kb):
            # A filtered search over a big base: the filtered documents' vectors, searched exactly.
            ids, _docs, matrix = self.store.vectors(kb, doc_ids=doc_ids)
            return self._exact_top(ids, matrix, q, k)
        if self.uses_ann(kb):
            index = self._ann_index(kb)
            with index.lock:
                found, sims = index.search(q, k)
            return [(int(c), float(np.clip(s, 0.0, 1.0))) for c, s in zip(found, sims, strict=True)]
        cache = self._exact_cache(kb)
        ids, matrix = cache.ids, cache.matrix
        if doc_ids is not None:
            mask = np.isin(cache.docs, np.asarray(list(doc_ids), dtype=np.int64))
            ids, matrix = ids[mask], matrix[mask]
        return self._exact_top(ids, matrix, q, k)

    @staticmethod
    def _exact_top(ids: Ids, matrix: Vectors, q: Vectors, k: int) -> Scored:
        if not len(ids):
            return []
        # einsum, not `matrix @ q`: a matrix-vector product is memory-bound, and OpenBLAS's threads (which
        # the embedder also uses) made it 1 ms or 50 ms at random when other work shared the cores.
        sims = np.einsum("ij,j->i", matrix, q)
        best = top_k(sims, k)
        return [(int(ids[i]), float(np.clip(sims[i], 0.0, 1.0))) for i in best]

    def uses_ann(self, kb: KBRecord) -> bool:
        entry = self._exact.get(kb.id)
        if entry is not None and entry.key == (kb.revision, kb.vector_epoch):
            return False
        if kb.id in self._ann:
            return True
        return self.store.counts(kb)[1] > self.ann_threshold

    def _exact_cache(self, kb: KBRecord) -> _Exact:
        key = (kb.revision, kb.vector_epoch)
        entry = self._exact.get(kb.id)
        if entry is not None and entry.key == key:
            return entry
        with self._lock(kb.id):
            entry = self._exact.get(kb.id)
            if entry is None or entry.key != key:
                ids, docs, matrix = self.store.vectors(kb)
                entry = self._exact[kb.id] = _Exact(key, ids, docs, matrix)
        return entry

    def prepare(self, kb: KBRecord, progress: Progress | None = None) -> None:
        """Bring a big knowledge base's ANN index up to date and save it, right after its chunks changed:
        the first search (in this process or a server that loads the file) then does not pay for it."""
        try:
            if self.uses_ann(kb):
                index = self._ann_index(kb, progress)
                with index.lock:
                    if index.unsaved:
                        index.save()
        except Exception:  # derived data: the documents are committed, and the next search tries again
            log.exception("could not bring the ANN index of '%s' up to date", kb.name)

    def _ann_index(self, kb: KBRecord, progress: Progress | None = None) -> AnnIndex:
        key = (kb.revision, kb.vector_epoch)
        cached = self._ann.get(kb.id)
        if cached is not None and cached[0] == key:
            return cached[1]
        with self._lock(kb.id):
            cached = self._ann.get(kb.id)
            if cached is not None and cached[0] == key:
                return cached[1]
            index = cached[1] if cached is not None and cached[1].epoch == kb.vector_epoch else None
            if index is None:
                index = AnnIndex(self.folder_of(kb), kb, self.threads)
            with index.lock:
                index.reconcile(self.store, kb, progress)
            self._exact.pop(kb.id, None)
            self._ann[kb.id] = (key, index)
            return index
