"""KBService: knowledge bases for the CLI, the HTTP routes, the web UI and chat. Knows nothing about HTTP.

The rows live in the store that `database_url` chooses (kb/stores/). Under $ZHIKU_HOME each knowledge base
has a folder kb/<name>/ with `files/<sha256>/<name>`: the originals, for download and re-indexing (with
PostgreSQL the database keeps them too, and this folder is a local copy of what this process needs).
"""

from __future__ import annotations

import builtins
import fcntl
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zhiku.config import Settings
from zhiku.embed.base import Embedder, EmbedderError, Vectors
from zhiku.errors import disk_full
from zhiku.kb import names
from zhiku.kb.ingest import Chunking, Job, Outcome, Pipeline, original_path, sweep_orphans
from zhiku.kb.search import Searcher
from zhiku.kb.store import KBRecord, Store
from zhiku.kb.stores import open_store
from zhiku.kb.types import (
    DocInfo,
    DocumentNotFound,
    EmbedderMismatch,
    Hit,
    KBError,
    KBInfo,
    KBNotFound,
    Progress,
    StorageFull,
)
from zhiku.limits import Limits

if TYPE_CHECKING:
    from zhiku.kb.loaders.ocr import OcrOptions

MODES = ("hybrid", "bm25", "dense")
Chunks = list[tuple[str, dict[str, Any]]]  # a caller's own chunks: (text, metadata)
# Called with each file's outcome as soon as it is committed (the CLI's per-file report, upload progress).
FileDone = Callable[[Outcome], None]


def supported_suffixes() -> frozenset[str]:
    from zhiku.kb.loaders import SUPPORTED_SUFFIXES

    return frozenset(s.lower() for s in SUPPORTED_SUFFIXES)


class KBService:
    # `list` is a method here (the contract's name), so annotations spell the type `builtins.list`.
    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.root = settings.home / "kb"
        self.store: Store = store or open_store(settings, lambda kb: self._folder(kb.name))
        self.searcher = Searcher(self.store)
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()

    # ---- helpers ---------------------------------------------------------------------------------

    def _folder(self, name: str) -> Path:
        return names.inside(self.root, self.root / names.validate_kb_name(name))

    def _lock(self, name: str) -> threading.RLock:
        """One writer per knowledge base in this process (the store keeps writers of other processes safe)."""
        with self._guard:
            return self._locks.setdefault(name, threading.RLock())

    def _kb(self, name: str) -> KBRecord:
        names.validate_kb_name(name)
        return self.store.get_kb(name)

    def _info(self, kb: KBRecord) -> KBInfo:
        docs, chunks = self.store.counts(kb)
        return KBInfo(name=kb.name, description=kb.description, embedder=kb.embedder, dim=kb.dim,
                      chunk_size=kb.chunk_size, chunk_overlap=kb.chunk_overlap, title_enhance=kb.title_enhance,
                      created=kb.created, documents=docs, chunks=chunks, temporary=kb.expires_at is not None,
                      expires_at=kb.expires_at)

    def _embedder(self, spec: str) -> Embedder:
        from zhiku.embed.registry import get_embedder

        try:
            return get_embedder(spec, self.settings)
        except EmbedderError as e:
            raise KBError(str(e)) from e

    def _kb_embedder(self, kb: KBRecord) -> Embedder:
        emb = self._embedder(kb.embedder)
        if emb.dim != kb.dim:
            raise EmbedderMismatch(f"knowledge base '{kb.name}' holds {kb.dim}-d vectors but embedder "
                                   f"'{kb.embedder}' now makes {emb.dim}-d ones; run `zhiku kb rebuild {kb.name}`")
        return emb

    # ---- knowledge bases -------------------------------------------------------------------------

    def create(self, name: str, description: str = "", embedder: str | None = None, chunk_size: int | None = None,
               chunk_overlap: int | None = None, title_enhance: bool | None = None,
               ttl_seconds: float | None = None) -> KBInfo:
        from zhiku.embed.registry import embedder_id

        names.validate_kb_name(name)
        if ttl_seconds is not None:
            self.expire_temporary()
        size = self.settings.chunk_size if chunk_size is None else chunk_size
        overlap = self.settings.chunk_overlap if chunk_overlap is None else chunk_overlap
        if size < 50:
            raise KBError(f"chunk size {size} is too small (at least 50 characters)")
        if not 0 <= overlap < size:
            raise KBError(f"chunk overlap {overlap} must be at least 0 and below the chunk size {size}")
        spec = embedder or self.settings.embedder
        try:
            eid = embedder_id(spec)
        except EmbedderError as e:
            raise KBError(str(e)) from e
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
            (self._folder(name) / "files").mkdir(parents=True, exist_ok=True)
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

    # ---- documents -------------------------------------------------------------------------------

    def _chunking(self, kb: KBRecord, chunk_size: int | None = None, chunk_overlap: int | None = None,
                  title_enhance: bool | None = None) -> Chunking:
        size = kb.chunk_size if chunk_size is None else chunk_size
        overlap = kb.chunk_overlap if chunk_overlap is None else chunk_overlap
        if size < 50 or not 0 <= overlap < size:
            raise KBError(f"invalid chunk settings: size {size}, overlap {overlap}")
        return Chunking(size, overlap, kb.title_enhance if title_enhance is None else title_enhance,
                        self.settings.max_chunks_per_document)

    def _run(self, kb: KBRecord, jobs: builtins.list[Job], progress: Progress | None, chunking: Chunking,
             on_file: FileDone | None = None) -> builtins.list[Outcome]:
        from zhiku.embed.batching import preferred_batch

        for job, rel in zip(jobs, names.distinct([j.rel for j in jobs]), strict=True):
            job.rel = rel
        emb = self._kb_embedder(kb)
        outcomes: builtins.list[Outcome] = []
        try:
            with self._lock(kb.name), self._ingesting(kb):
                pipe = Pipeline(self.store, kb, emb, self._folder(kb.name) / "files", chunking,
                                self.settings.parse_timeout, int(self.settings.max_unzipped_mb * 1024 * 1024),
                                preferred_batch(emb), progress, self._ocr())
                for outcome in pipe.run(jobs):
                    outcomes.append(outcome)
                    if on_file is not None:
                        on_file(outcome)
                if any(o.kind != "unchanged" for o in outcomes):
                    self.store.prepare(kb, progress)
        except Exception as e:
            if disk_full(e):
                raise self._storage_full(e, [o.doc for o in outcomes], len(jobs)) from e
            raise
        return outcomes

    def _storage_full(self, e: BaseException, stored: builtins.list[DocInfo], total: int) -> StorageFull:
        where = getattr(e, "filename", None) or self.settings.home
        kept = f"{len(stored)} of {total} files were stored before it filled"
        if stored:
            kept += " (" + ", ".join(d.path for d in stored[:5]) + (", ..." if len(stored) > 5 else "") + ")"
        return StorageFull(f"disk full: no space left for {where} ({e}); {kept}, the rest were not. Free some "
                           "space and add them again (stored files are skipped as unchanged).", stored)

    def _ocr(self) -> OcrOptions:
        from zhiku.kb.loaders.ocr import OcrOptions

        s = self.settings
        return OcrOptions(s.ocr, s.ocr_max_pages, s.ocr_threads, s.ocr_model)

    @contextmanager
    def _ingesting(self, kb: KBRecord) -> Iterator[None]:
        """Held by every ingestion: a shared flock on kb/<name>/.ingest.lock, across processes (the CLI may
        add while the server does). Orphaned originals are swept first, but only under an exclusive lock, so
        never while another process is between copying a file and committing it."""
        folder = self._folder(kb.name)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / ".ingest.lock").open("a+b") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                sweep_orphans(folder / "files", {(d.sha256, Path(d.path).name) for d in self.store.documents(kb)})
            except BlockingIOError:
                pass
            fcntl.flock(lock, fcntl.LOCK_SH)
            yield

    def add_files(self, name: str, paths: Sequence[Path], progress: Progress | None = None,
                  chunk_size: int | None = None, chunk_overlap: int | None = None,
                  title_enhance: bool | None = None, on_file: FileDone | None = None) -> builtins.list[DocInfo]:
        """Add files (a folder adds its supported files, keeping their relative paths). Files already in
        the knowledge base with the same content are left untouched; changed ones are replaced; two files
        with one name in the same call are kept apart (`a.txt`, `a (2).txt`). A full disk raises
        StorageFull listing what was stored before it."""
        kb = self._kb(name)
        jobs: builtins.list[Job] = []
        for p in paths:
            path = Path(p)
            if path.is_dir():
                jobs += [Job(f, rel) for rel, f in self._scan(path).items()]
            elif path.is_file():
                jobs.append(Job(path, names.sanitize_filename(path.name)))
            else:
                raise KBError(f"no such file or folder: {path}")
        outcomes = self._run(kb, jobs, progress, self._chunking(kb, chunk_size, chunk_overlap, title_enhance),
                             on_file)
        return [o.doc for o in outcomes]

    def add_bytes(self, name: str, filename: str, data: bytes, chunk_size: int | None = None,
                  chunk_overlap: int | None = None, title_enhance: bool | None = None) -> DocInfo:
        return self.add_uploads(name, [(filename, data)], chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                                title_enhance=title_enhance)[0]

    def add_uploads(self, name: str, files: Sequence[tuple[str, bytes]], progress: Progress | None = None,
                    chunk_size: int | None = None, chunk_overlap: int | None = None,
                    title_enhance: bool | None = None, custom_chunks: Mapping[str, Chunks] | None = None,
                    on_file: FileDone | None = None) -> builtins.list[DocInfo]:
        """Uploaded files (safe base names), each with its own outcome (the rules of add_files apply);
        `custom_chunks` replace parsing."""
        kb = self._kb(name)
        limits = Limits.from_settings(self.settings)
        for filename, data in files:
            limits.check_file(names.sanitize_filename(filename), len(data))
        chunking = self._chunking(kb, chunk_size, chunk_overlap, title_enhance)
        folder = self._folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder, prefix=".upload-") as tmp:
            jobs = []
            try:
                for i, (filename, data) in enumerate(files):
                    safe = names.sanitize_filename(filename)
                    src = Path(tmp) / str(i) / safe
                    src.parent.mkdir()
                    src.write_bytes(data)
                    custom = (custom_chunks or {}).get(filename)
                    jobs.append(Job(src, safe, force=custom is not None, chunks=custom))
            except OSError as e:
                if disk_full(e):
                    raise self._storage_full(e, [], len(files)) from e
                raise
            outcomes = self._run(kb, jobs, progress, chunking, on_file)
        return [o.doc for o in outcomes]

    def _scan(self, directory: Path) -> dict[str, Path]:
        """Supported, non-hidden files under `directory`: {relative path: file}."""
        suffixes = supported_suffixes()
        found: builtins.list[Path] = []
        for dirpath, dirnames, filenames in os.walk(directory):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found += [Path(dirpath) / fn for fn in sorted(filenames)
                      if not fn.startswith(".") and Path(fn).suffix.lower() in suffixes]
        # Two names that clean to one ("a:b.txt", "a_b.txt") stay two documents.
        rels = names.distinct([names.safe_relative(f.relative_to(directory).as_posix()) for f in found])
        return dict(zip(rels, found, strict=True))

    def documents(self, name: str) -> builtins.list[DocInfo]:
        return self.store.documents(self._kb(name))

    def document(self, name: str, doc_id: int) -> DocInfo:
        return self.store.document(self._kb(name), doc_id)

    def chunks(self, name: str, doc_id: int) -> builtins.list[dict[str, Any]]:
        return [{"id": c.id, "ordinal": c.ordinal, "text": c.text, "metadata": c.metadata}
                for c in self.store.chunks(self._kb(name), doc_id)]

    def delete_document(self, name: str, doc_id: int) -> None:
        kb = self._kb(name)
        with self._lock(name):
            doc = self.store.document(kb, doc_id)
            self.store.delete_document(kb, doc_id)
            self._drop_original(kb, doc)

    def _drop_original(self, kb: KBRecord, doc: DocInfo) -> None:
        """Remove a deleted document's original unless another document shares it (same content and name)."""
        if any(d.sha256 == doc.sha256 and Path(d.path).name == Path(doc.path).name
               for d in self.store.documents(kb)):
            return
        path = original_path(self._folder(kb.name) / "files", doc.sha256, doc.path)
        path.unlink(missing_ok=True)
        try:
            path.parent.rmdir()
        except OSError:
            pass

    def document_path(self, name: str, doc_id: int) -> Path:
        """The stored original of a document; always inside the knowledge base's folder."""
        kb = self._kb(name)
        doc = self.store.document(kb, doc_id)
        files = self._folder(name) / "files"
        path = names.inside(files, original_path(files, doc.sha256, names.safe_relative(doc.path)))
        if not path.is_file() and not self.store.load_original(kb, doc, path):
            raise DocumentNotFound(f"the original of '{doc.path}' is missing from {files}")
        return path

    def document_by_path(self, name: str, path: str) -> DocInfo | None:
        return self.store.document_by_path(self._kb(name), path)

    def reindex_document(self, name: str, doc_id: int, chunk_size: int | None = None,
                         chunk_overlap: int | None = None, title_enhance: bool | None = None,
                         chunks: Chunks | None = None) -> DocInfo:
        """Parse, split and embed a document again from its stored original, or store the given chunks."""
        kb = self._kb(name)
        doc = self.store.document(kb, doc_id)
        job = Job(self.document_path(name, doc_id), doc.path, force=True, chunks=chunks)
        return self._run(kb, [job], None, self._chunking(kb, chunk_size, chunk_overlap, title_enhance))[0].doc

    def sync(self, name: str, directory: Path, progress: Progress | None = None) -> dict[str, builtins.list[str]]:
        """Make the knowledge base hold exactly the folder's supported files, compared by content hash."""
        kb = self._kb(name)
        directory = Path(directory)
        if not directory.is_dir():
            raise KBError(f"no such folder: {directory}")
        wanted = self._scan(directory)
        result: dict[str, builtins.list[str]] = {"added": [], "updated": [], "removed": [], "unchanged": [], "failed": []}
        with self._lock(name):
            for doc in self.store.documents(kb):
                if doc.path not in wanted:
                    self.store.delete_document(kb, doc.id)
                    self._drop_original(kb, doc)
                    result["removed"].append(doc.path)
            for o in self._run(kb, [Job(f, rel) for rel, f in wanted.items()], progress, self._chunking(kb)):
                result[o.kind].append(o.rel)
                if o.doc.status == "failed" and o.kind != "unchanged":
                    result["failed"].append(o.rel)
        return result

    def rebuild(self, name: str, progress: Progress | None = None, embedder: str | None = None) -> None:
        """Re-embed every stored chunk (with `embedder`, which then becomes the knowledge base's), then
        swap all vectors in one transaction; the derived ANN index (if the base is big enough for one) is
        dropped and built again from the new vectors."""
        from zhiku.embed.batching import embed_in_batches
        from zhiku.embed.registry import embedder_id

        kb = self._kb(name)
        try:
            eid = embedder_id(embedder) if embedder else kb.embedder
        except EmbedderError as e:
            raise KBError(str(e)) from e
        emb = self._embedder(eid)
        with self._lock(name):
            ids, texts = self.store.chunk_texts(kb)
            report = (lambda done, total: progress("chunks", done, total)) if progress else None
            vectors = embed_in_batches(emb, texts, progress=report)
            self.store.replace_vectors(kb, ids, vectors, eid, emb.dim)
            self.store.prepare(kb, progress)

    # ---- search ----------------------------------------------------------------------------------

    def search(self, name: str, query: str, top_k: int = 3, score_threshold: float = 0.0, mode: str = "hybrid",
               document_ids: Sequence[int] | None = None, embedder: str | None = None) -> builtins.list[Hit]:
        kb = self._kb(name)
        if mode not in MODES:
            raise KBError(f"unknown search mode '{mode}'; use one of {', '.join(MODES)}")
        if embedder is not None:
            from zhiku.embed.registry import embedder_id

            try:
                asked = embedder_id(embedder)
            except EmbedderError as e:
                raise KBError(str(e)) from e
            if asked != kb.embedder:
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
