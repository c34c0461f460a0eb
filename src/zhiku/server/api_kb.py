"""/api/kb: knowledge bases, documents, chunks, search and rebuild. Thin: every decision is KBService's.

Service errors (KBError and subclasses) are turned into HTTP statuses by server/errors.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, StrictBool

from zhiku.config import ChunkOverlap, ChunkSize, ScoreThreshold, TopK
from zhiku.errors import as_error
from zhiku.kb.service import KBService
from zhiku.kb.types import DocInfo, Hit, KBInfo
from zhiku.limits import SQL_INT_MAX, Limits
from zhiku.server.deps import get_services
from zhiku.server.errors import status_of
from zhiku.server.limits import read_uploads
from zhiku.server.links import KB_PREFIX
from zhiku.services import Services

router = APIRouter(prefix=KB_PREFIX, tags=["knowledge bases"])  # links.download_url points here


def kb_service(services: Annotated[Services, Depends(get_services)]) -> KBService:
    return services.kb


KB = Annotated[KBService, Depends(kb_service)]
DocId = Annotated[int, Path(ge=1, le=SQL_INT_MAX)]


class CreateKB(BaseModel):
    name: str = Field(min_length=1, max_length=64, description="letters, digits, CJK, '-' and '_'")
    description: str = Field("", max_length=2000)
    embedder: str | None = Field(None, max_length=1000, description="default: the configured embedder")
    chunk_size: ChunkSize | None = None
    chunk_overlap: ChunkOverlap | None = None
    title_enhance: StrictBool | None = None


class SearchRequest(BaseModel):
    query: str = Field(max_length=10_000)
    top_k: TopK | None = Field(None, description="default: the configured top_k")
    score_threshold: ScoreThreshold | None = Field(None, description="default: the configured score_threshold")
    mode: Literal["hybrid", "bm25", "dense"] = "hybrid"
    document_ids: list[int] | None = Field(None, max_length=1000)


class Chunk(BaseModel):
    id: int
    ordinal: int
    text: str
    metadata: dict[str, Any]


@router.get("", response_model=list[KBInfo])
def list_kbs(kb: KB, include_temporary: bool = False) -> list[KBInfo]:
    return kb.list(include_temporary=include_temporary)


@router.post("", response_model=KBInfo, status_code=201)
def create_kb(body: CreateKB, kb: KB) -> KBInfo:
    return kb.create(body.name, body.description, body.embedder, body.chunk_size, body.chunk_overlap,
                     body.title_enhance)


@router.get("/{name}", response_model=KBInfo)
def get_kb(name: str, kb: KB) -> KBInfo:
    return kb.get(name)


@router.delete("/{name}", status_code=204)
def delete_kb(name: str, kb: KB) -> Response:
    kb.delete(name)
    return Response(status_code=204)


@router.get("/{name}/documents", response_model=list[DocInfo])
def list_documents(name: str, kb: KB) -> list[DocInfo]:
    return kb.documents(name)


@router.post("/{name}/documents", response_model=list[DocInfo],
             responses={200: {"content": {"application/x-ndjson": {}},
                              "description": "with ?stream=true: progress lines {what, done, total}, a line "
                                             "{document, outcome} per file as it is stored, {phase: searchable} "
                                             "once all are, with ?wait=true lines {what: embedded, done, total} "
                                             "until every chunk has its vector, then {done: true} "
                                             "or {error, code, status}"}})
async def upload_documents(name: str, kb: KB, files: Annotated[list[UploadFile], File(description="documents")],
                           chunk_size: Annotated[ChunkSize | None, Form()] = None,
                           chunk_overlap: Annotated[ChunkOverlap | None, Form()] = None,
                           title_enhance: Annotated[bool | None, Form()] = None,
                           stream: Annotated[bool, Query(description="stream progress as NDJSON")] = False,
                           wait: Annotated[bool, Query(description="answer once every chunk is embedded, not "
                                                                   "once the files are searchable")] = False,
                           ) -> list[DocInfo] | StreamingResponse:
    """Upload one or more files; each gets its own document record (a failed parse is recorded, not raised).
    Two files with one name are both kept (`a.txt`, `a (2).txt`); a full disk is a 507 naming what was kept.
    The files are searchable (full text) when this answers; their vectors follow in the background (see
    GET /api/kb/{name}: `embedding`), unless `wait`."""
    data = await run_in_threadpool(read_uploads, files, Limits.from_settings(kb.settings))
    if not stream:
        return await run_in_threadpool(lambda: kb.add_uploads(name, data, None, chunk_size, chunk_overlap,
                                                              title_enhance, wait=wait))
    kb.get(name)  # a missing knowledge base is a 404 before the stream starts

    def work(emit: Callable[[dict[str, Any]], None]) -> None:
        def progress(what: str, done: int, total: int) -> None:
            emit({"what": what, "done": done, "total": total})

        kb.add_uploads(name, data, progress, chunk_size, chunk_overlap, title_enhance, wait=False,
                       on_file=lambda o: emit({"document": dataclasses.asdict(o.doc), "outcome": o.kind}))
        emit({"phase": "searchable"})
        if wait:
            kb.wait_embedded(name, progress)

    return ndjson_stream(work, "zhiku-kb-upload")


@router.get("/{name}/documents/{doc_id}", response_model=DocInfo)
def get_document(name: str, doc_id: DocId, kb: KB) -> DocInfo:
    return kb.document(name, doc_id)


@router.delete("/{name}/documents/{doc_id}", status_code=204)
def delete_document(name: str, doc_id: DocId, kb: KB) -> Response:
    kb.delete_document(name, doc_id)
    return Response(status_code=204)


@router.post("/{name}/documents/{doc_id}/reindex", response_model=DocInfo)
def reindex_document(name: str, doc_id: DocId, kb: KB) -> DocInfo:
    return kb.reindex_document(name, doc_id)


@router.get("/{name}/documents/{doc_id}/download", response_class=FileResponse)
def download_document(name: str, doc_id: DocId, kb: KB) -> FileResponse:
    doc = kb.document(name, doc_id)
    return FileResponse(kb.document_path(name, doc_id), filename=doc.path.rsplit("/", 1)[-1],
                        media_type="application/octet-stream")


@router.get("/{name}/documents/{doc_id}/chunks", response_model=list[Chunk])
def document_chunks(name: str, doc_id: DocId, kb: KB) -> list[dict[str, Any]]:
    return kb.chunks(name, doc_id)


@router.post("/{name}/search", response_model=list[Hit])
def search(name: str, body: SearchRequest, kb: KB, response: Response) -> list[Hit]:
    """While the base is partly embedded, the header X-Zhiku-Embedding says so ("embedding 1,240 / 5,000
    chunks, ~4 min left"): dense search saw only the embedded chunks, BM25 every one."""
    hits = kb.search(name, body.query, top_k=body.top_k, score_threshold=body.score_threshold, mode=body.mode,
                     document_ids=body.document_ids)
    if (partly := kb.partly_embedded(name, body.mode)) is not None:
        response.headers["X-Zhiku-Embedding"] = partly.text()
    return hits


@router.post("/{name}/rebuild", response_class=StreamingResponse,
             responses={200: {"content": {"application/x-ndjson": {}},
                              "description": "progress lines {what, done, total}, then {done: true} or {error}"}})
async def rebuild(name: str, kb: KB,
                  embedder: Annotated[str | None, Query(max_length=1000)] = None) -> StreamingResponse:
    """Re-embed every chunk; progress is streamed as NDJSON, one JSON object per line."""
    kb.get(name)  # a missing knowledge base is a 404 before the stream starts

    def work(emit: Callable[[dict[str, Any]], None]) -> None:
        kb.rebuild(name, progress=lambda what, done, total: emit({"what": what, "done": done, "total": total}),
                   embedder=embedder)

    return ndjson_stream(work, "zhiku-kb-rebuild")


def ndjson_stream(work: Callable[[Callable[[dict[str, Any]], None]], None], thread: str) -> StreamingResponse:
    """Run `work(emit)` on a thread and stream what it emits as NDJSON, then {done: true} or {error, type,
    code, status} (the status the error would have had: the status line has already been sent)."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def emit(event: dict[str, Any] | None) -> None:
        loop.call_soon_threadsafe(events.put_nowait, event)

    def run() -> None:
        try:
            work(emit)
            emit({"done": True})
        except Exception as e:
            err = as_error(e)
            emit({"error": err.message, "type": type(e).__name__, "code": err.code, "status": status_of(err)})
        finally:
            emit(None)

    threading.Thread(target=run, name=thread, daemon=True).start()

    async def lines() -> AsyncIterator[bytes]:
        while (event := await events.get()) is not None:
            yield (json.dumps(event, ensure_ascii=False) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")
