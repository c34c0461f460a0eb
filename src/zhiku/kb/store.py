"""The document store: one protocol that every store implements (kb/stores/sqlite, kb/stores/postgres).

The store answers searches itself: `text_search` (BM25 over its full-text index) and `vector_search`
(cosine over its vector index), each with k, an optional document filter and scores already in [0, 1],
higher better. Fusion, thresholds and top_k stay above it (kb/search.py, kb/service.py).

Crash safety, whatever the store: `put_document` writes a document, its chunks, their vectors and their
full-text rows in ONE transaction, so after any crash a file is either wholly in the database or absent.

Vectors may come later: `put_document(..., vectors=None)` stores the chunks searchable by BM25 at once and
queues them for embedding; the queue is the chunks without a vector, kept in the database (it survives any
crash). `claim_pending` hands a batch of them to one embedding worker at a time, whatever the number of
processes: PostgreSQL locks the rows it hands out (`FOR UPDATE SKIP LOCKED`), SQLite lets one process embed
at a time (a lock file beside the database); the batch's vectors are written in one transaction, only to
chunks still waiting, so a chunk is never given two vectors, and a batch cut short by a crash is embedded
again, never lost. Dense search sees the chunks with vectors.

A rebuild (`kb rebuild --embedder ...`) goes through the database too (`Store.rebuilds`): the new vectors
are stored beside the old ones (a staging table, one row per chunk) while search goes on with the old
ones; once every chunk has its new vector, `finish` puts them in place and records the new embedder in ONE
transaction (a new vector epoch), so dense search never mixes two embedders. A restart resumes a rebuild
where it stopped; new chunks added meanwhile get their new vector before the switch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from zhiku.embed.base import Vectors
from zhiku.errors import ErrorKind
from zhiku.kb.types import DocInfo, KBError, Progress

Ids = npt.NDArray[np.int64]
Scored = list[tuple[int, float]]  # (chunk id, score in [0, 1]) best first

# Both stores map a BM25 score s (k1=1.2, b=0.75) to s / (s + BM25_HALF) in [0, 1]. A score of 0.5 means
# s = BM25_HALF, roughly two rare query words matched in an average-length chunk.
BM25_HALF = 10.0


def bm25_relevance(raw: float) -> float:
    """A BM25 score as a relevance in [0, 1] (0 for no match)."""
    return raw / (raw + BM25_HALF) if raw > 0 else 0.0


class StoreError(KBError):
    """The store refused an operation; the message says what to do. (An unreachable or misconfigured
    database raises zhiku.db.DatabaseUnavailable / DatabaseConfigError, shared with the history.)"""


class StoreConflict(StoreError):
    """A write lost a race with another writer (e.g. chunks changed during a rebuild): run it again."""

    kind: ErrorKind = "conflict"
    code = "store_conflict"


@dataclass
class KBRecord:
    id: int
    name: str
    description: str
    embedder: str
    dim: int
    chunk_size: int
    chunk_overlap: int
    title_enhance: bool
    created: float
    expires_at: float | None = None
    revision: int = 0
    vector_epoch: int = 0


class Unchanged(Exception):  # noqa: N818 - a condition the caller reports, not a failure
    """put_document(if_changed=True) found the path already holding this content: nothing was written."""


@dataclass
class NewDocument:
    path: str
    sha256: str
    loader: str
    status: str
    error: str | None
    size: int
    original: Path | None = None  # the stored original, for stores that keep originals themselves

    def refuse_unchanged(self, stored_sha256: str | None, if_changed: bool) -> None:
        """put_document's if_changed check, given what its transaction found at the path."""
        if if_changed and stored_sha256 == self.sha256:
            raise Unchanged(self.path)


@dataclass
class NewChunk:
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    fts: str | None = None  # Store.index_form(text), computed ahead of the write; computed then if None


@dataclass
class ChunkRow:
    id: int
    document_id: int
    document: str
    ordinal: int
    text: str
    metadata: dict[str, Any]


@dataclass
class Pending:
    """A batch of chunks handed to one embedding worker: their ids and texts, and how to store their vectors
    (in one transaction; returns how many were stored: a chunk deleted meanwhile is skipped)."""

    kb: KBRecord
    ids: list[int]
    texts: list[str]
    save: Callable[[Vectors], int]


class Rebuilds(Protocol):
    """A rebuild's queue: the chunks without their new vector (handed out like the embedding queue's)."""

    # (re)start: new vectors with `embedder` (`dim`); one already under way to the same embedder resumes
    def start(self, kb: KBRecord, embedder: str, dim: int) -> None: ...
    def target(self, kb: KBRecord) -> tuple[str, int] | None: ...  # (embedder, dim) of a rebuild under way
    def done(self, kb: KBRecord) -> int: ...  # chunks with their new vector
    def kbs(self) -> list[KBRecord]: ...  # knowledge bases with a rebuild under way
    def claim(self, kb: KBRecord, n: int) -> AbstractContextManager[Pending | None]: ...
    # every chunk has its new vector: switch to them (and the new embedder) in one transaction; else False
    def finish(self, kb: KBRecord) -> bool: ...


class Store(Protocol):
    # True when text_search and vector_search may run at once from two threads (a server answers each)
    concurrent_searches: bool
    # knowledge bases
    def create_kb(self, rec: KBRecord) -> KBRecord: ...
    def get_kb(self, name: str) -> KBRecord: ...
    def list_kbs(self) -> list[KBRecord]: ...
    def counts(self, kb: KBRecord) -> tuple[int, int]: ...
    def delete_kb(self, kb: KBRecord) -> None: ...
    def set_description(self, kb: KBRecord, description: str) -> None: ...
    def expired(self, now: float) -> list[KBRecord]: ...
    # documents and their originals
    def documents(self, kb: KBRecord) -> list[DocInfo]: ...
    def document(self, kb: KBRecord, doc_id: int) -> DocInfo: ...
    def document_by_path(self, kb: KBRecord, path: str) -> DocInfo | None: ...
    # if_changed: raise Unchanged instead when the path already holds this content (another writer stored it
    # meanwhile; checked inside the storing transaction, under the knowledge base's write lock)
    def put_document(self, kb: KBRecord, doc: NewDocument, chunks: Sequence[NewChunk],
                     vectors: Vectors | None, if_changed: bool = False) -> DocInfo: ...
    def delete_document(self, kb: KBRecord, doc_id: int) -> None: ...
    def load_original(self, kb: KBRecord, doc: DocInfo, dest: Path) -> bool: ...
    # chunks and vectors
    def chunks(self, kb: KBRecord, doc_id: int) -> list[ChunkRow]: ...
    def chunk_ids(self, kb: KBRecord) -> Ids: ...
    def chunk_texts(self, kb: KBRecord) -> tuple[Ids, list[str]]: ...
    def replace_vectors(self, kb: KBRecord, ids: Ids, vectors: Vectors, embedder: str, dim: int) -> None: ...
    def fetch(self, kb: KBRecord, chunk_ids: Sequence[int]) -> dict[int, ChunkRow]: ...
    # the embedding queue
    def waiting_count(self, kb: KBRecord) -> int: ...  # chunks without a vector yet (an index answers)
    def waiting_kbs(self) -> list[KBRecord]: ...  # knowledge bases with chunks waiting for a vector
    def claim_pending(self, kb: KBRecord, n: int) -> AbstractContextManager[Pending | None]: ...
    def set_rate(self, kb: KBRecord, chunks_per_s: float) -> None: ...
    def rate(self, kb: KBRecord) -> float | None: ...  # chunks/s last measured by any process
    @property
    def rebuilds(self) -> Rebuilds: ...  # a rebuild's queue (kb rebuild through the embedding worker)
    # search
    def index_form(self, text: str) -> str: ...
    def text_search(self, kb: KBRecord, query: str, k: int, doc_ids: Sequence[int] | None = None) -> Scored: ...
    def vector_search(self, kb: KBRecord, query: Vectors, k: int, doc_ids: Sequence[int] | None = None) -> Scored: ...
    def prepare(self, kb: KBRecord, progress: Progress | None = None) -> None: ...
    # integrity and life cycle
    def check(self, kb: KBRecord) -> dict[str, Any]: ...
    def close(self) -> None: ...
