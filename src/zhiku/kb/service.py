"""KBService: knowledge bases for the CLI, the HTTP routes, the web UI and chat. Knows nothing about HTTP.

The one public entry, composed of parts that each keep their own state: what they share (kb/core.py's
KBContext: settings, store, folders, locks, embedders), the documents (kb/documents.py: adding, syncing,
re-indexing, deleting, downloading; their methods are offered here as they are), the background embedding
(kb/embedding.py: the queue's worker and status), and here the knowledge bases themselves (create, list,
delete, expiry) and search. While a base is partly embedded, search is BM25 over every chunk fused with
dense over the embedded ones, and `partly_embedded` says so beside the results. The rows live in the store that `database_url`
chooses (kb/stores/).
"""

from __future__ import annotations

import builtins
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zhiku import db
from zhiku.config import Settings
from zhiku.embed.base import Vectors
from zhiku.kb import names
from zhiku.kb.core import KBContext, embedder_id_or_error
from zhiku.kb.documents import Chunks as Chunks  # re-exported: the routes' name for a caller's own chunks
from zhiku.kb.documents import Documents, FileDone
from zhiku.kb.embedding import EmbeddingQueue, EmbeddingStatus
from zhiku.kb.search import Searcher
from zhiku.kb.store import KBRecord, Store
from zhiku.kb.types import DocInfo, EmbedderMismatch, Hit, KBError, KBInfo, KBNotFound, Progress

MODES = ("hybrid", "bm25", "dense")


class _Switched(Exception):  # noqa: N818 - a condition: the base's vectors changed during a search
    """A rebuild switched the base to new vectors while a search read it (kb/embedding.py)."""


class KBService:
    # `list` is a method here (the contract's name), so annotations spell the type `builtins.list`.

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.ctx = KBContext(settings, store)
        self.settings, self.store = settings, self.ctx.store
        self.embedding = EmbeddingQueue(self.ctx)
        self.docs = Documents(self.ctx, queued=self.embedding.wake)
        self.searcher = Searcher(self.store)

    def _info(self, kb: KBRecord) -> KBInfo:
        docs, _ = self.store.counts(kb)
        status = self.embedding.status(kb.name)
        return KBInfo(name=kb.name, description=kb.description, embedder=kb.embedder, dim=kb.dim,
                      chunk_size=kb.chunk_size, chunk_overlap=kb.chunk_overlap, title_enhance=kb.title_enhance,
                      created=kb.created, documents=docs, chunks=status.total, temporary=kb.expires_at is not None,
                      expires_at=kb.expires_at, embedded_chunks=status.embedded, embedding=status.text(),
                      embedding_eta_s=None if status.eta_seconds is None else round(status.eta_seconds, 1),
                      rebuilding=status.rebuilding, rebuilt_chunks=status.rebuilt)

    # ---- knowledge bases -------------------------------------------------------------------------

    def create(self, name: str, description: str = "", embedder: str | None = None, chunk_size: int | None = None,
               chunk_overlap: int | None = None, title_enhance: bool | None = None,
               ttl_seconds: float | None = None) -> KBInfo:
        name = names.validate_kb_name(name)  # in NFC
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
        emb = self.ctx.embedder(eid)
        now = time.time()
        rec = KBRecord(id=0, name=name, description=description, embedder=eid, dim=emb.dim, chunk_size=size,
                       chunk_overlap=overlap,
                       title_enhance=self.settings.title_enhance if title_enhance is None else title_enhance,
                       created=now, expires_at=None if ttl_seconds is None else now + ttl_seconds)
        with self.ctx.lock(name):
            rec = self.store.create_kb(rec)
            try:
                (self.ctx.folder(name) / "files").mkdir(parents=True, exist_ok=True)
            except OSError:
                self.store.delete_kb(rec)  # no row without its folder (a full disk, a name the file system refuses)
                raise
        return self._info(rec)

    def list(self, include_temporary: bool = False) -> builtins.list[KBInfo]:
        return [self._info(kb) for kb in self.store.list_kbs() if include_temporary or kb.expires_at is None]

    def get(self, name: str) -> KBInfo:
        return self._info(self.ctx.record(name))

    def set_description(self, name: str, description: str) -> None:
        self.store.set_description(self.ctx.record(name), description)

    def delete(self, name: str) -> None:
        kb = self.ctx.record(name)
        with self.ctx.lock(name):
            self.store.delete_kb(kb)
            shutil.rmtree(self.ctx.folder(name), ignore_errors=True)

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

    def search(self, name: str, query: str, top_k: int | None = None, score_threshold: float | None = None,
               mode: str = "hybrid", document_ids: Sequence[int] | None = None, embedder: str | None = None
               ) -> builtins.list[Hit]:
        """The best `top_k` chunks with a relevance of at least `score_threshold` (unset: the configured ones).
        Its waits for database connections end together by one deadline (a 503 within db.POOL_WAIT)."""
        with db.pool_deadline():
            try:
                return self._search(name, query, top_k, score_threshold, mode, document_ids, embedder)
            except _Switched:  # a rebuild switched the base's vectors mid-search: once more, all new
                return self._search(name, query, top_k, score_threshold, mode, document_ids, embedder)

    def _search(self, name: str, query: str, top_k: int | None, score_threshold: float | None, mode: str,
                document_ids: Sequence[int] | None, embedder: str | None) -> builtins.list[Hit]:
        top_k, score_threshold = self.settings.retrieval(top_k, score_threshold)
        kb = self.ctx.record(name)
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
            # The query is embedded with the embedder the record names; a rebuild that switches the base to
            # new vectors in between is seen by the epoch check below, and the search runs again.
            try:
                qvec = self.ctx.kb_embedder(kb).embed_queries([query])[0]
                if mode == "dense":
                    scored = self.searcher.dense(kb, qvec, top_k, docs)
                else:
                    # While part of the base waits for vectors, dense (over the embedded part only) counts in
                    # proportion: a few embedded chunks must not outvote BM25's hits among the rest.
                    scored = self.searcher.hybrid(kb, query, qvec, top_k, docs, self.settings.bm25_weight,
                                                  self.settings.dense_weight * self.embedding.embedded_share(kb))
            except Exception as e:  # e.g. the new vectors' dimension against the old query's
                if self.store.get_kb(name).vector_epoch != kb.vector_epoch:
                    raise _Switched from e
                raise
            if self.store.get_kb(name).vector_epoch != kb.vector_epoch:
                raise _Switched
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

    # ---- documents (kb/documents.py) --------------------------------------------------------------

    def add_files(self, name: str, paths: Sequence[Path], progress: Progress | None = None,
                  chunk_size: int | None = None, chunk_overlap: int | None = None,
                  title_enhance: bool | None = None, on_file: FileDone | None = None,
                  wait: bool = True) -> builtins.list[DocInfo]:
        return self.docs.add_files(name, paths, progress, chunk_size, chunk_overlap, title_enhance, on_file, wait)

    def add_bytes(self, name: str, filename: str, data: bytes, chunk_size: int | None = None,
                  chunk_overlap: int | None = None, title_enhance: bool | None = None, wait: bool = True) -> DocInfo:
        return self.docs.add_bytes(name, filename, data, chunk_size, chunk_overlap, title_enhance, wait)

    def add_uploads(self, name: str, files: Sequence[tuple[str, bytes]], progress: Progress | None = None,
                    chunk_size: int | None = None, chunk_overlap: int | None = None,
                    title_enhance: bool | None = None, custom_chunks: Mapping[str, Chunks] | None = None,
                    on_file: FileDone | None = None, wait: bool = True) -> builtins.list[DocInfo]:
        return self.docs.add_uploads(name, files, progress, chunk_size, chunk_overlap, title_enhance, custom_chunks,
                                     on_file, wait)

    def documents(self, name: str) -> builtins.list[DocInfo]:
        return self.docs.documents(name)

    def document(self, name: str, doc_id: int) -> DocInfo:
        return self.docs.document(name, doc_id)

    def document_by_path(self, name: str, path: str) -> DocInfo | None:
        return self.docs.document_by_path(name, path)

    def document_path(self, name: str, doc_id: int) -> Path:
        return self.docs.document_path(name, doc_id)

    def chunks(self, name: str, doc_id: int) -> builtins.list[dict[str, Any]]:
        return self.docs.chunks(name, doc_id)

    def delete_document(self, name: str, doc_id: int) -> None:
        self.docs.delete_document(name, doc_id)

    def unindex_document(self, name: str, doc_id: int) -> DocInfo:
        return self.docs.unindex_document(name, doc_id)

    def reindex_document(self, name: str, doc_id: int, chunk_size: int | None = None,
                         chunk_overlap: int | None = None, title_enhance: bool | None = None,
                         chunks: Chunks | None = None, progress: Progress | None = None) -> DocInfo:
        return self.docs.reindex_document(name, doc_id, chunk_size, chunk_overlap, title_enhance, chunks, progress)

    def sync(self, name: str, directory: Path, progress: Progress | None = None,
             on_file: FileDone | None = None, wait: bool = True) -> dict[str, builtins.list[str]]:
        return self.docs.sync(name, directory, progress, on_file, wait)

    def rebuild(self, name: str, progress: Progress | None = None, embedder: str | None = None,
                wait: bool = True) -> None:
        """New vectors for every chunk (with `embedder`, which then becomes the base's), through the embedding
        queue: the base keeps answering with BM25 and its old vectors until every new one is in, then
        switches at once. `wait`: embed here (or wait for the worker that does) with progress("chunks",
        done, total) until the switch; else return at once (a server's worker embeds them). A rebuild cut
        short (a kill, a restart) resumes where it stopped."""
        kb = self.ctx.record(name)
        self.embedding.start_rebuild(kb, embedder_id_or_error(embedder) if embedder else kb.embedder)
        if wait:
            self.embedding.drain(name, progress, rebuild=True)

    def embed(self, texts: builtins.list[str], embedder: str | None = None) -> Vectors:
        """Vectors for POST /v1/embeddings (passage form: the symmetric use of an embedding API)."""
        return self.ctx.embedder(embedder or self.settings.embedder).embed_passages(list(texts))

    def partly_embedded(self, name: str, mode: str = "hybrid") -> EmbeddingStatus | None:
        """The base's embedding status when a search in `mode` saw only part of it (dense search sees the
        embedded chunks only), else None: what results show beside them."""
        status = self.embedding.status(name)
        return None if mode == "bm25" or status.complete else status

    def wait_embedded(self, name: str, progress: Progress | None = None) -> int:
        """Return once every chunk of the knowledge base has its vector (embedding them here meanwhile, or
        waiting for the process that does); returns the number embedded here."""
        return self.embedding.drain(name, progress)

    def close(self) -> None:
        self.embedding.stop()
        self.store.close()
