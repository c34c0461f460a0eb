"""KBService: knowledge bases for the CLI, the HTTP routes, the web UI and chat. Knows nothing about HTTP.

The one public entry, in three parts: what they share (kb/core.py: settings, store, folders, locks,
embedders), the documents (kb/documents.py: adding, syncing, re-indexing, deleting, downloading), and here
the knowledge bases themselves (create, list, delete, expiry) and search. The rows live in the store that
`database_url` chooses (kb/stores/).
"""

from __future__ import annotations

import builtins
import shutil
import time
from collections.abc import Sequence

from zhiku.embed.base import Vectors
from zhiku.kb import names
from zhiku.kb.core import embedder_id_or_error
from zhiku.kb.documents import Chunks as Chunks  # re-exported: the routes' name for a caller's own chunks
from zhiku.kb.documents import KBDocuments
from zhiku.kb.store import KBRecord
from zhiku.kb.types import EmbedderMismatch, Hit, KBError, KBInfo, KBNotFound

MODES = ("hybrid", "bm25", "dense")


class KBService(KBDocuments):
    # `list` is a method here (the contract's name), so annotations spell the type `builtins.list`.

    def _info(self, kb: KBRecord) -> KBInfo:
        docs, chunks = self.store.counts(kb)
        return KBInfo(name=kb.name, description=kb.description, embedder=kb.embedder, dim=kb.dim,
                      chunk_size=kb.chunk_size, chunk_overlap=kb.chunk_overlap, title_enhance=kb.title_enhance,
                      created=kb.created, documents=docs, chunks=chunks, temporary=kb.expires_at is not None,
                      expires_at=kb.expires_at)

    # ---- knowledge bases -------------------------------------------------------------------------

    def create(self, name: str, description: str = "", embedder: str | None = None, chunk_size: int | None = None,
               chunk_overlap: int | None = None, title_enhance: bool | None = None,
               ttl_seconds: float | None = None) -> KBInfo:
        names.validate_kb_name(name)
        if ttl_seconds is not None:
            self.expire_temporary()
        size = self.settings.chunk_size if chunk_size is None else chunk_size
        overlap = self.settings.chunk_overlap if chunk_overlap is None else chunk_overlap
        if size < 50:
            raise KBError(f"chunk size {size} is too small (at least 50 characters)")
        if not 0 <= overlap < size:
            raise KBError(f"chunk overlap {overlap} must be at least 0 and below the chunk size {size}")
        eid = embedder_id_or_error(embedder or self.settings.embedder)
        if clash := names.same_but_case(name, (k.name for k in self.store.list_kbs())):
            raise KBError(f"knowledge base '{clash}' already exists; '{name}' differs from it only by letter "
                          "case, and their folders would be one on a case-insensitive file system")
        emb = self._embedder(eid)
        now = time.time()
        rec = KBRecord(id=0, name=name, description=description, embedder=eid, dim=emb.dim, chunk_size=size,
                       chunk_overlap=overlap,
                       title_enhance=self.settings.title_enhance if title_enhance is None else title_enhance,
                       created=now, expires_at=None if ttl_seconds is None else now + ttl_seconds)
        with self._lock(name):
            rec = self.store.create_kb(rec)
            try:
                (self._folder(name) / "files").mkdir(parents=True, exist_ok=True)
            except OSError:
                self.store.delete_kb(rec)  # no row without its folder (a full disk, a name the file system refuses)
                raise
        return self._info(rec)

    def list(self, include_temporary: bool = False) -> builtins.list[KBInfo]:
        return [self._info(kb) for kb in self.store.list_kbs() if include_temporary or kb.expires_at is None]

    def get(self, name: str) -> KBInfo:
        return self._info(self._kb(name))

    def set_description(self, name: str, description: str) -> None:
        self.store.set_description(self._kb(name), description)

    def delete(self, name: str) -> None:
        kb = self._kb(name)
        with self._lock(name):
            self.store.delete_kb(kb)
            shutil.rmtree(self._folder(name), ignore_errors=True)

    def expire_temporary(self, now: float | None = None) -> builtins.list[str]:
        gone = []
        for kb in self.store.expired(time.time() if now is None else now):
            try:
                self.delete(kb.name)
                gone.append(kb.name)
            except KBNotFound:
                pass
        return gone

    # ---- search ----------------------------------------------------------------------------------

    def search(self, name: str, query: str, top_k: int = 3, score_threshold: float = 0.0, mode: str = "hybrid",
               document_ids: Sequence[int] | None = None, embedder: str | None = None) -> builtins.list[Hit]:
        kb = self._kb(name)
        if mode not in MODES:
            raise KBError(f"unknown search mode '{mode}'; use one of {', '.join(MODES)}")
        if embedder is not None and (asked := embedder_id_or_error(embedder)) != kb.embedder:
            raise EmbedderMismatch(f"knowledge base '{name}' was built with embedder '{kb.embedder}', not "
                                   f"'{asked}'; searching it with another embedder is refused "
                                   f"(rebuild it with `zhiku kb rebuild {name} --embedder {embedder}`)")
        if not query.strip() or top_k < 1:
            return []
        docs = list(document_ids) if document_ids is not None else None
        if mode == "bm25":
            scored = self.searcher.bm25(kb, query, top_k, docs)
        else:
            qvec = self._kb_embedder(kb).embed_queries([query])[0]
            if mode == "dense":
                scored = self.searcher.dense(kb, qvec, top_k, docs)
            else:
                scored = self.searcher.hybrid(kb, query, qvec, top_k, docs, self.settings.bm25_weight,
                                              self.settings.dense_weight)
        scored = [(cid, s) for cid, s in scored if s >= score_threshold]
        rows = self.store.fetch(kb, [cid for cid, _ in scored])
        hits = []
        for cid, score in scored:
            row = rows.get(cid)
            if row is None:  # deleted between the search and the fetch
                continue
            hits.append(Hit(chunk_id=cid, document_id=row.document_id, document=row.document, text=row.text,
                            score=round(float(score), 6), page=row.metadata.get("page"),
                            heading=list(row.metadata.get("heading") or []), metadata=row.metadata))
        return hits

    def embed(self, texts: builtins.list[str], embedder: str | None = None) -> Vectors:
        """Vectors for POST /v1/embeddings (passage form: the symmetric use of an embedding API)."""
        return self._embedder(embedder or self.settings.embedder).embed_passages(list(texts))

    def close(self) -> None:
        self.store.close()
