"""The documents of a knowledge base: adding (files, folders, uploads), syncing with a folder, re-indexing,
deleting and downloading. The ingestion itself is kb/ingest.py's Pipeline; this part runs it
under the knowledge base's locks and turns a full disk into StorageFull. A part of KBService (kb/service.py),
working through the shared KBContext (kb/core.py).
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from zhiku.errors import disk_full, disk_full_reason
from zhiku.kb import names
from zhiku.kb.core import KBContext
from zhiku.kb.ingest import Chunking, Job, Outcome, Pipeline, original_path, sweep_orphans
from zhiku.kb.staging import LOCK_FILE, staging_folder, sweep_staging
from zhiku.kb.store import KBRecord, NewDocument
from zhiku.kb.types import UNINDEXED, DocInfo, DocumentNotFound, KBError, Progress, StorageFull
from zhiku.limits import Limits

Chunks = list[tuple[str, dict[str, Any]]]  # a caller's own chunks: (text, metadata)
# Called with each file's outcome as soon as it is committed (the CLI's per-file report, upload progress).
FileDone = Callable[[Outcome], None]


def supported_suffixes() -> frozenset[str]:
    from zhiku.kb.loaders import SUPPORTED_SUFFIXES

    return frozenset(s.lower() for s in SUPPORTED_SUFFIXES)


class Scan(NamedTuple):
    files: dict[str, Path]  # relative path -> the file to read
    refused: dict[str, str]  # relative path -> why it is not read


def _unreadable(path: Path, base: Path) -> str | None:
    """Why a file found in a folder scan must not be read, or None. A symbolic link is followed only to a
    regular file inside the folder (a link to /etc/passwd is not ingested); pipes and devices are not read
    (reading a FIFO would block forever)."""
    if path.is_symlink():
        try:
            target = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return "a symbolic link whose target is missing (or loops): not read"
        if not target.is_relative_to(base):
            return f"a symbolic link to {target}, outside the folder: not followed"
    try:
        mode = path.stat().st_mode
    except OSError as e:
        return f"cannot be read: {e.strerror or e}"
    return None if stat.S_ISREG(mode) else "not a regular file (a pipe, socket or device): not read"


def _not_taken(name: str, suffixes: frozenset[str]) -> str | None:
    """Why a scan passes over a file by its name alone (hidden, or a type no loader reads), or None."""
    if name.startswith("."):
        return "a hidden file: not read"
    suffix = Path(name).suffix.lower()
    if not suffix:
        return "no file suffix, so no known type: not read"
    return None if suffix in suffixes else f"unsupported file type {suffix!r}: not read"


def scan(directory: Path) -> Scan:
    """Supported files under `directory`, and every other entry it passes over, with the reason (hidden
    files and folders, unsupported types, links out of the folder, pipes): a scan accounts for all it saw.
    Linked folders are not entered; one that leads outside the folder is reported."""
    suffixes = supported_suffixes()
    base = directory.resolve()
    found: list[tuple[Path, str | None]] = []
    for dirpath, dirnames, filenames in os.walk(directory):
        here = Path(dirpath)
        found += [(here / d, "a hidden folder: not entered") for d in sorted(dirnames) if d.startswith(".")]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for d in dirnames:
            if (here / d).is_symlink() and not (here / d).resolve().is_relative_to(base):
                found.append((here / d, f"a symbolic link to the folder {(here / d).resolve()}, outside the "
                                        "folder: not followed"))
        found += [(here / fn, _not_taken(fn, suffixes) or _unreadable(here / fn, base)) for fn in sorted(filenames)]
    taken = [f for f, why in found if why is None]
    # Two names that clean to one ("a:b.txt", "a_b.txt") stay two documents.
    rels = names.distinct([names.safe_relative(f.relative_to(directory).as_posix()) for f in taken])
    result = Scan(dict(zip(rels, taken, strict=True)), {})
    for f, why in found:
        if why is not None:  # reported under the name it has in the folder, made printable
            rel = f.relative_to(directory).as_posix()
            result.refused["".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in rel)] = why
    return result


def not_read(kb: KBRecord, rel: str, why: str) -> Outcome:
    """The outcome of a file a scan refused: reported like a failed file, nothing stored."""
    return Outcome(rel, DocInfo(id=0, kb=kb.name, path=rel, sha256="", loader="", status="failed", error=why,
                                chunk_count=0, size=0, added=time.time()), "skipped")


def storage_full(e: BaseException, stored: list[DocInfo], total: int) -> StorageFull:
    """The error for a full disk: what was stored, without server paths (a remote client's message)."""
    kept = f"{len(stored)} of {total} files were stored before it filled"
    if stored:
        kept += " (" + ", ".join(d.path for d in stored[:5]) + (", ..." if len(stored) > 5 else "") + ")"
    return StorageFull(f"disk full ({disk_full_reason(e)}); {kept}, the rest were not. Free some space and add "
                       "them again (stored files are skipped as unchanged).", stored)


class Documents:
    """`wait=True` embeds every chunk before its file is committed (one phase, the vectors are there when the
    call returns); `wait=False` commits each file searchable by BM25 as soon as it is parsed and queues its
    chunks for the embedding worker (kb/embedding.py), then calls `queued`."""

    def __init__(self, ctx: KBContext, queued: Callable[[], None] = lambda: None) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.settings = ctx.settings
        self.queued = queued

    def _chunking(self, kb: KBRecord, chunk_size: int | None = None, chunk_overlap: int | None = None,
                  title_enhance: bool | None = None) -> Chunking:
        size = kb.chunk_size if chunk_size is None else chunk_size
        overlap = kb.chunk_overlap if chunk_overlap is None else chunk_overlap
        if size < 50 or not 0 <= overlap < size:
            raise KBError(f"invalid chunk settings: size {size}, overlap {overlap}")
        return Chunking(size, overlap, kb.title_enhance if title_enhance is None else title_enhance,
                        self.settings.max_chunks_per_document)

    def _run(self, kb: KBRecord, jobs: list[Job], progress: Progress | None, chunking: Chunking,
             on_file: FileDone | None = None, wait: bool = True) -> list[Outcome]:
        from zhiku.embed.batching import DEFAULT_BATCH, preferred_batch

        for job, rel in zip(jobs, names.distinct([j.rel for j in jobs]), strict=True):
            job.rel = rel
        emb = self.ctx.kb_embedder(kb) if wait else None
        outcomes: list[Outcome] = []
        try:
            with self.ctx.lock(kb.name), self._ingesting(kb):
                pipe = Pipeline(self.store, kb, emb, self.ctx.folder(kb.name) / "files", chunking,
                                self.settings.parse_timeout, int(self.settings.max_unzipped_mb * 1024 * 1024),
                                preferred_batch(emb) if emb else DEFAULT_BATCH, progress, self.ctx.ocr())
                for outcome in pipe.run(jobs):
                    outcomes.append(outcome)
                    if on_file is not None:
                        on_file(outcome)
                if any(o.kind != "unchanged" for o in outcomes):
                    self.store.prepare(kb, progress)
        except Exception as e:
            if not wait and outcomes:
                self.queued()
            if disk_full(e):
                raise storage_full(e, [o.doc for o in outcomes], len(jobs)) from e
            raise
        if not wait:
            self.queued()
        return outcomes

    @contextmanager
    def _ingesting(self, kb: KBRecord) -> Iterator[None]:
        """Held by every ingestion: a shared flock on kb/<name>/.ingest.lock, across processes (the CLI may
        add while the server does). Orphaned originals are swept first, but only under an exclusive lock, so
        never while another process is between copying a file and committing it."""
        folder = self.ctx.folder(kb.name)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / LOCK_FILE).open("a+b") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                sweep_orphans(folder / "files", {(d.sha256, Path(d.path).name) for d in self.store.documents(kb)})
                sweep_staging(folder)  # what an upload killed mid-way left
            except BlockingIOError:
                pass
            fcntl.flock(lock, fcntl.LOCK_SH)
            yield

    def add_files(self, name: str, paths: Sequence[Path], progress: Progress | None = None,
                  chunk_size: int | None = None, chunk_overlap: int | None = None,
                  title_enhance: bool | None = None, on_file: FileDone | None = None,
                  wait: bool = True) -> list[DocInfo]:
        """Add files (a folder adds its supported files, keeping their relative paths). Files already in
        the knowledge base with the same content are left untouched; changed ones are replaced; two files
        with one name in the same call are kept apart (`a.txt`, `a (2).txt`). A full disk raises
        StorageFull listing what was stored before it."""
        kb = self.ctx.record(name)
        jobs: list[Job] = []
        refused: list[Outcome] = []
        for p in paths:
            path = Path(p)
            if path.is_dir():
                found = scan(path)
                jobs += [Job(f, rel) for rel, f in found.files.items()]
                refused += [not_read(kb, rel, why) for rel, why in found.refused.items()]
            elif path.is_file():
                jobs.append(Job(path, names.sanitize_filename(path.name)))
            else:
                raise KBError(f"no such file or folder: {path}")
        for o in refused:
            if on_file is not None:
                on_file(o)
        outcomes = self._run(kb, jobs, progress, self._chunking(kb, chunk_size, chunk_overlap, title_enhance),
                             on_file, wait)
        return [o.doc for o in refused + outcomes]

    def add_bytes(self, name: str, filename: str, data: bytes, chunk_size: int | None = None,
                  chunk_overlap: int | None = None, title_enhance: bool | None = None, wait: bool = True) -> DocInfo:
        return self.add_uploads(name, [(filename, data)], chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                                title_enhance=title_enhance, wait=wait)[0]

    def add_uploads(self, name: str, files: Sequence[tuple[str, bytes]], progress: Progress | None = None,
                    chunk_size: int | None = None, chunk_overlap: int | None = None,
                    title_enhance: bool | None = None, custom_chunks: Mapping[str, Chunks] | None = None,
                    on_file: FileDone | None = None, wait: bool = True) -> list[DocInfo]:
        """Uploaded files (safe base names), each with its own outcome (the rules of add_files apply);
        `custom_chunks` replace parsing."""
        kb = self.ctx.record(name)
        limits = Limits.from_settings(self.settings)
        for filename, data in files:
            limits.check_file(names.sanitize_filename(filename), len(data))
        chunking = self._chunking(kb, chunk_size, chunk_overlap, title_enhance)
        # staged under the ingestion lock: a sweep never takes a live upload's folder for a dead one
        with self._ingesting(kb), staging_folder(self.ctx.folder(name)) as tmp:
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
                    raise storage_full(e, [], len(files)) from e
                raise
            outcomes = self._run(kb, jobs, progress, chunking, on_file, wait)
        return [o.doc for o in outcomes]

    def documents(self, name: str) -> list[DocInfo]:
        return self.store.documents(self.ctx.record(name))

    def document(self, name: str, doc_id: int) -> DocInfo:
        return self.store.document(self.ctx.record(name), doc_id)

    def chunks(self, name: str, doc_id: int) -> list[dict[str, Any]]:
        return [{"id": c.id, "ordinal": c.ordinal, "text": c.text, "metadata": c.metadata}
                for c in self.store.chunks(self.ctx.record(name), doc_id)]

    def delete_document(self, name: str, doc_id: int) -> None:
        kb = self.ctx.record(name)
        with self.ctx.lock(name):
            doc = self.store.document(kb, doc_id)
            self.store.delete_document(kb, doc_id)
            self._drop_original(kb, doc)

    def unindex_document(self, name: str, doc_id: int) -> DocInfo:
        """Take a document out of the search but keep its record and original (status UNINDEXED):
        reindex_document brings it back."""
        kb = self.ctx.record(name)
        with self.ctx.lock(name):
            doc = self.store.document(kb, doc_id)
            kept = NewDocument(path=doc.path, sha256=doc.sha256, loader=doc.loader, status=UNINDEXED, error=None,
                               size=doc.size)
            return self.store.put_document(kb, kept, [], np.zeros((0, kb.dim), dtype=np.float32))

    def _drop_original(self, kb: KBRecord, doc: DocInfo) -> None:
        """Remove a deleted document's original unless another document shares it (same content and name)."""
        if any(d.sha256 == doc.sha256 and Path(d.path).name == Path(doc.path).name
               for d in self.store.documents(kb)):
            return
        path = original_path(self.ctx.folder(kb.name) / "files", doc.sha256, doc.path)
        path.unlink(missing_ok=True)
        try:
            path.parent.rmdir()
        except OSError:
            pass

    def document_path(self, name: str, doc_id: int) -> Path:
        """The stored original of a document; always inside the knowledge base's folder."""
        kb = self.ctx.record(name)
        doc = self.store.document(kb, doc_id)
        files = self.ctx.folder(name) / "files"
        path = names.inside(files, original_path(files, doc.sha256, names.safe_relative(doc.path)))
        if not path.is_file() and not self.store.load_original(kb, doc, path):
            why = f"not kept: it could not be read ({doc.error})" if doc.status == "failed" else "missing"
            raise DocumentNotFound(f"the original of '{doc.path}' is {why}")
        return path

    def document_by_path(self, name: str, path: str) -> DocInfo | None:
        return self.store.document_by_path(self.ctx.record(name), path)

    def reindex_document(self, name: str, doc_id: int, chunk_size: int | None = None,
                         chunk_overlap: int | None = None, title_enhance: bool | None = None,
                         chunks: Chunks | None = None, progress: Progress | None = None) -> DocInfo:
        """Parse, split and embed a document again from its stored original, or store the given chunks."""
        kb = self.ctx.record(name)
        doc = self.store.document(kb, doc_id)
        job = Job(self.document_path(name, doc_id), doc.path, force=True, chunks=chunks)
        return self._run(kb, [job], progress, self._chunking(kb, chunk_size, chunk_overlap, title_enhance))[0].doc

    def sync(self, name: str, directory: Path, progress: Progress | None = None,
             on_file: FileDone | None = None, wait: bool = True) -> dict[str, list[str]]:
        """Make the knowledge base hold exactly the folder's supported files, compared by content hash;
        `on_file` hears of each file as it is committed (or refused by the scan)."""
        kb = self.ctx.record(name)
        directory = Path(directory)
        if not directory.is_dir():
            raise KBError(f"no such folder: {directory}")
        found = scan(directory)
        result: dict[str, list[str]] = {"added": [], "updated": [], "removed": [], "unchanged": [], "failed": [],
                                        "skipped": []}

        def done(o: Outcome) -> None:
            result[o.kind].append(o.rel)
            if o.doc.status == "failed" and o.kind in ("added", "updated"):
                result["failed"].append(o.rel)
            if on_file is not None:
                on_file(o)

        with self.ctx.lock(name):
            for doc in self.store.documents(kb):
                if doc.path not in found.files:
                    self.store.delete_document(kb, doc.id)
                    self._drop_original(kb, doc)
                    done(Outcome(doc.path, doc, "removed"))
            for rel, why in found.refused.items():
                done(not_read(kb, rel, why))
            self._run(kb, [Job(f, rel) for rel, f in found.files.items()], progress, self._chunking(kb), done, wait)
        return result
