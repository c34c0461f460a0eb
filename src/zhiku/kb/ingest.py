"""The ingestion pipeline: read -> parse -> split -> embed -> store, with the embedder never waiting.

A producer thread hashes, stores the original, parses, splits and segments files ahead of time (bounded
by a budget of pending chunks); the calling thread fills embedder batches across file boundaries (many
small files still make full batches) and commits each file in ONE transaction as soon as all its chunks
have vectors. The embedder spreads each batch over every core itself; the parse work overlaps with it.
Without an embedder (the default two-phase ingestion), each file is committed as soon as it is parsed, its
chunks waiting in the embedding queue (kb/embedding.py): searchable by BM25 at once, by vectors later.
"""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zhiku.embed.base import Embedder, Vectors
from zhiku.kb.store import KBRecord, NewChunk, NewDocument, Store, Unchanged
from zhiku.kb.types import DocInfo, Progress
from zhiku.limits import LimitExceeded, check_chunk_count

if TYPE_CHECKING:
    from zhiku.kb.loaders.ocr import OcrOptions

PENDING_CHUNKS = 4_096  # parsed-but-not-embedded chunks held in memory at most


@dataclass
class Chunking:
    chunk_size: int
    chunk_overlap: int
    title_enhance: bool
    max_chunks: int = 0  # per document; a file that splits into more is refused (0: no limit)


@dataclass
class Job:
    source: Path  # the file to read
    rel: str      # its document path inside the knowledge base
    force: bool = False  # re-ingest even when the content is unchanged (reindex)
    # The caller's own chunks (text, metadata), stored instead of parsing and splitting the file.
    chunks: list[tuple[str, dict[str, Any]]] | None = None


@dataclass
class Outcome:
    rel: str
    doc: DocInfo
    kind: str  # added | updated | unchanged | skipped (refused by a folder scan) | removed (by a sync)


@dataclass
class _Prepared:
    job: Job
    doc: NewDocument
    chunks: list[NewChunk]
    existed: bool
    vectors: list[Vectors] = field(default_factory=list)
    embedded: int = 0
    unchanged: DocInfo | None = None


def given_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """A caller's chunk metadata (Chatchat's custom `docs`), with zhiku's own keys kept only when they have
    zhiku's types: search, citations and the UI read `page` as a number and `heading` as a list of strings, and
    one chunk with `"heading": 5` would make every search of its knowledge base fail."""
    out = dict(meta)
    for key in ("page", "start", "end", "section"):
        if key in out and (isinstance(out[key], bool) or not isinstance(out[key], int) or out[key] < 0):
            del out[key]
    heading = out.get("heading")
    if isinstance(heading, str):
        out["heading"] = [heading]
    elif "heading" in out and not (isinstance(heading, list) and all(isinstance(h, str) for h in heading)):
        del out["heading"]
    return out


def sha256_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def original_path(files_dir: Path, sha: str, rel: str) -> Path:
    """Originals are content-addressed (files/<sha256>/<name>): writing one never clobbers the copy that a
    committed document row points to, so a crash between copy and commit cannot make them disagree."""
    return files_dir / sha / Path(rel).name


def sweep_orphans(files_dir: Path, referenced: set[tuple[str, str]]) -> int:
    """Delete originals that no document refers to ((sha256, file name) pairs): what an ingestion killed
    between copying a file and committing it leaves behind. Returns the number of files removed."""
    removed = 0
    for f in files_dir.glob("*/*") if files_dir.is_dir() else ():
        if f.is_file() and (f.parent.name, f.name) not in referenced:
            f.unlink(missing_ok=True)
            removed += 1
            try:
                f.parent.rmdir()
            except OSError:  # another original with the same content still lives there
                pass
    return removed


def keep_original(source: Path, dest: Path) -> None:
    if dest.exists():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a half copy on a full disk would hold the space the commits need
        raise


class Pipeline:
    def __init__(self, store: Store, kb: KBRecord, embedder: Embedder | None, files_dir: Path, chunking: Chunking,
                 parse_timeout: float, max_unzipped_bytes: int, batch_size: int,
                 progress: Progress | None = None, ocr: OcrOptions | None = None) -> None:
        self.store, self.kb, self.embedder = store, kb, embedder
        self.files_dir, self.chunking = files_dir, chunking
        self.parse_timeout, self.max_unzipped = parse_timeout, max_unzipped_bytes
        self.batch_size = max(1, batch_size)
        self.progress = progress
        self.ocr = ocr
        self._stop = threading.Event()
        self._room = threading.Condition()
        self._in_flight = 0  # chunks parsed but not yet embedded
        self._existing: dict[str, DocInfo] = {}
        self.chunks_total = 0
        self.chunks_done = 0
        self.started = time.perf_counter()

    # ---- producer --------------------------------------------------------------------------------

    def _prepare(self, job: Job) -> _Prepared:
        sha, size = sha256_file(job.source)
        existing = self._existing.get(job.rel)
        doc = NewDocument(path=job.rel, sha256=sha, loader="", status="ok", error=None, size=size,
                          original=original_path(self.files_dir, sha, job.rel))
        if existing is not None and existing.sha256 == sha and not job.force:
            return _Prepared(job, doc, [], True, unchanged=existing)
        stored = original_path(self.files_dir, sha, job.rel)
        keep_original(job.source, stored)
        chunks: list[NewChunk] = []
        if job.chunks is not None:
            doc.loader = "custom"
            given = [(t, m) for t, m in job.chunks if t.strip()]
            try:
                check_chunk_count(len(given), self.chunking.max_chunks)
            except LimitExceeded as e:
                doc.status, doc.error = "failed", e.message
                return _Prepared(job, doc, [], existing is not None)
            chunks = [NewChunk(t, given_metadata(m), self.store.index_form(t)) for t, m in given]
            if not chunks:
                doc.status, doc.error = "failed", "the given chunks hold no text"
            return _Prepared(job, doc, chunks, existing is not None)
        try:
            from zhiku.kb.loaders import LoaderError, load_guarded
            from zhiku.kb.splitter import split

            try:
                loaded = load_guarded(stored, self.parse_timeout, self.max_unzipped, ocr=self.ocr,
                                      pages=lambda done, total: self._report("ocr", done, total))
            except LoaderError as e:
                doc.status, doc.error = "failed", str(e)
                return _Prepared(job, doc, [], existing is not None)
            doc.loader = loaded.loader
            drafts = split(loaded.sections, self.chunking.chunk_size, self.chunking.chunk_overlap,
                           self.chunking.title_enhance)
            try:
                check_chunk_count(len(drafts), self.chunking.max_chunks)
            except LimitExceeded as e:
                doc.status, doc.error = "failed", e.message
                return _Prepared(job, doc, [], existing is not None)
            index_form = self.store.index_form  # the full-text form: CPU work, done here off the write path
            chunks = [NewChunk(d.text, dict(d.metadata), index_form(d.text)) for d in drafts if d.text.strip()]
            warnings = list(loaded.warnings)
            if not chunks:
                doc.status, doc.error = "failed", "; ".join(["no text found", *warnings])
            elif warnings:
                doc.status, doc.error = "warning", "; ".join(warnings)
        except Exception as e:  # a parser bug on one file must not stop the others
            doc.status, doc.error, chunks = "failed", f"{type(e).__name__}: {e}", []
        return _Prepared(job, doc, chunks, existing is not None)

    def _produce(self, jobs: list[Job], out: queue.Queue[_Prepared | BaseException | None]) -> None:
        try:
            for job in jobs:
                if self._stop.is_set():
                    return
                item = self._prepare(job)
                with self._room:  # wait for room: memory stays bounded on huge folders
                    while self._in_flight and self._in_flight + len(item.chunks) > PENDING_CHUNKS:
                        if self._stop.is_set():
                            return
                        self._room.wait(timeout=0.2)
                    self._in_flight += len(item.chunks)
                out.put(item)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            out.put(e)
        finally:
            out.put(None)

    # ---- consumer --------------------------------------------------------------------------------

    def run(self, jobs: list[Job]) -> Iterator[Outcome]:
        """Ingest `jobs`, yielding each file's outcome as it is committed."""
        q: queue.Queue[_Prepared | BaseException | None] = queue.Queue()
        # Looked up here, not in the producer thread, which then never opens a database connection.
        self._existing = {d.path: d for d in self.store.documents(self.kb)}
        producer = threading.Thread(target=self._produce, args=(jobs, q), name="zhiku-ingest-parse", daemon=True)
        producer.start()
        pending: list[_Prepared] = []
        failure: BaseException | None = None
        files_done, finished = 0, False
        self._report("files", 0, len(jobs))
        try:
            while not finished or pending:
                # Take what the producer has ready; block only when there is nothing to embed.
                while not finished:
                    waiting = sum(len(p.chunks) - p.embedded for p in pending)
                    try:
                        item = q.get(block=waiting == 0 and not any(self._complete(p) for p in pending))
                    except queue.Empty:
                        break
                    if item is None:
                        finished = True
                    elif isinstance(item, BaseException):  # raised once the files before it are committed
                        failure, finished = item, True
                    else:
                        pending.append(item)
                        self.chunks_total += len(item.chunks)
                        if self.embedder is None:  # committed without vectors: they are queued
                            self._embedded(item, len(item.chunks))
                        if waiting + len(item.chunks) >= self.batch_size:
                            break
                self._embed_batch(pending)
                while pending and self._complete(pending[0]):
                    p = pending.pop(0)
                    yield self._commit(p)
                    files_done += 1
                    self._report("files", files_done, len(jobs))
            if failure is not None:
                raise failure
        finally:
            self._stop.set()
            producer.join(timeout=5)

    @staticmethod
    def _complete(p: _Prepared) -> bool:
        return p.embedded == len(p.chunks)

    def _embed_batch(self, pending: list[_Prepared]) -> None:
        texts: list[str] = []
        owners: list[tuple[_Prepared, int]] = []
        for p in pending:
            take = min(len(p.chunks) - p.embedded, self.batch_size - len(texts))
            if take <= 0:
                continue
            texts += [c.text for c in p.chunks[p.embedded:p.embedded + take]]
            owners.append((p, take))
            if len(texts) >= self.batch_size:
                break
        if not texts:
            return
        assert self.embedder is not None  # without one, every chunk counts as embedded on arrival
        vecs = self.embedder.embed_passages(texts)
        at = 0
        for p, take in owners:
            p.vectors.append(vecs[at:at + take])
            self._embedded(p, take)
            at += take
        self._report("chunks", self.chunks_done, self.chunks_total)

    def _embedded(self, p: _Prepared, n: int) -> None:
        p.embedded += n
        with self._room:
            self._in_flight -= n
            self._room.notify_all()
        self.chunks_done += n

    def _commit(self, p: _Prepared) -> Outcome:
        if p.unchanged is not None:
            return Outcome(p.job.rel, p.unchanged, "unchanged")
        kept = self._existing.get(p.job.rel)
        if p.job.force and kept is not None and p.doc.status == "failed":
            # A re-read of a stored document that fails (new chunk settings, over a cap) keeps what is stored.
            return Outcome(p.job.rel, replace(kept, status="failed", error=f"{p.doc.error}; the stored version "
                                                                          "is kept"), "unchanged")
        vectors: Vectors | None = None
        if self.embedder is not None:
            vectors = np.concatenate(p.vectors) if p.vectors else np.empty((0, self.kb.dim), np.float32)
        refused = p.doc.status == "failed"
        if refused:
            p.doc.original = None  # nothing was read from it: the database keeps no copy
        try:
            doc = self.store.put_document(self.kb, p.doc, p.chunks, vectors, if_changed=not p.job.force)
        except Unchanged:  # another process (a second `kb add` of the folder) stored this content meanwhile
            stored = self.store.document_by_path(self.kb, p.doc.path)
            if stored is not None:
                return Outcome(p.job.rel, stored, "unchanged")
            doc = self.store.put_document(self.kb, p.doc, p.chunks, vectors)  # and deleted it since
        if refused:
            self._drop_copy(doc)
        return Outcome(p.job.rel, doc, "updated" if p.existed else "added")

    def _drop_copy(self, doc: DocInfo) -> None:
        """A refused file keeps its record and reason, not its bytes (a refused 100 MB text must not hold
        100 MB), unless a stored document shares that original (same content and name)."""
        name = Path(doc.path).name
        if any(d.sha256 == doc.sha256 and Path(d.path).name == name and d.status != "failed"
               for d in self.store.documents(self.kb)):
            return
        copy = original_path(self.files_dir, doc.sha256, doc.path)
        copy.unlink(missing_ok=True)
        try:
            copy.parent.rmdir()
        except OSError:  # another original with the same content lives there
            pass

    def _report(self, what: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(what, done, total)
