"""Plain data shared by the knowledge-base layer and its callers (chat, UI, API, eval)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zhiku.errors import ErrorKind, ZhikuError

# Long work reports progress as (what: "files" | "chunks" | "index" | "ocr", done, total); "ocr" counts the
# pages of the document being read by OCR.
Progress = Callable[[str, int, int], None]


class KBError(ZhikuError):
    """A knowledge-base operation was refused; the message is shown to the user as is."""

    kind: ErrorKind = "invalid_request"
    code = "kb_error"


class KBNotFound(KBError):
    kind: ErrorKind = "not_found"
    code = "kb_not_found"


class KBExists(KBError):
    kind: ErrorKind = "conflict"
    code = "kb_exists"


class InvalidName(KBError):
    code = "invalid_name"


class DocumentNotFound(KBError):
    kind: ErrorKind = "not_found"
    code = "document_not_found"


class EmbedderMismatch(KBError):
    code = "embedder_mismatch"


class StorageFull(KBError):
    """The disk (or quota) holding ZHIKU_HOME filled up; `stored` lists what was committed before it."""

    kind: ErrorKind = "storage_full"
    code = "insufficient_storage"

    def __init__(self, message: str, stored: list[DocInfo] | None = None) -> None:
        super().__init__(message)
        self.stored = stored or []


@dataclass
class KBInfo:
    name: str
    description: str
    embedder: str
    dim: int
    chunk_size: int
    chunk_overlap: int
    title_enhance: bool
    created: float
    documents: int = 0
    chunks: int = 0
    temporary: bool = False
    expires_at: float | None = None
    embedded_chunks: int = 0  # chunks with their vector; the others wait in the embedding queue
    embedding: str = "embedded"  # or "embedding 1,240 / 5,000 chunks, ~4 min left"
    embedding_eta_s: float | None = None
    rebuilding: str | None = None  # a rebuild under way: the embedder it moves to (search keeps the old vectors)
    rebuilt_chunks: int = 0  # chunks with their new vector, during a rebuild


# A document kept with its original but out of the search (no chunks) until it is re-indexed: what
# Langchain-Chatchat's delete_docs leaves when it keeps the file in the base's content folder.
UNINDEXED = "unindexed"


@dataclass
class DocInfo:
    id: int
    kb: str
    path: str  # relative to the knowledge base folder
    sha256: str
    loader: str
    status: str  # "ok" | "failed" | "warning" | UNINDEXED
    error: str | None
    chunk_count: int
    size: int
    added: float


@dataclass
class Hit:
    """One search result. score is a relevance in [0, 1], higher is better."""

    chunk_id: int
    document_id: int
    document: str
    text: str
    score: float
    page: int | None = None
    heading: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
