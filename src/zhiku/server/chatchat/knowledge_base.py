"""Chatchat 0.2's eleven /knowledge_base routes: its bodies, and envelopes around what service.py answers.

The vector store type and Chatchat's embedding model names are accepted and ignored: every base is zhiku's
store with its recorded embedder.
"""

from __future__ import annotations

import json
import mimetypes
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, File, Form, Query, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, model_validator

from zhiku.config import ChunkOverlap, ChunkSize, TopK
from zhiku.kb.service import Chunks, KBService
from zhiku.kb.types import KBError
from zhiku.limits import Limits
from zhiku.server.chatchat import service
from zhiku.server.chatchat.wire import envelope, json_stream
from zhiku.server.deps import get_services
from zhiku.server.limits import read_uploads
from zhiku.services import Services

router = APIRouter(prefix="/knowledge_base", tags=["Langchain-Chatchat 0.2"])
ServicesDep = Annotated[Services, Depends(get_services)]
Name = Field(max_length=200, description="knowledge base name")
_DOCS = TypeAdapter(dict[str, list[service.CustomDoc]])


def _refusal(kb: KBService, name: str, data: Any = None) -> JSONResponse | None:
    problem = service.problem(kb, name)
    return None if problem is None else envelope(*problem, data)


def _docs(raw: str | dict[str, Any], limits: Limits) -> dict[str, Chunks]:
    """Chatchat's `docs` (a JSON string, or an object): {file name: [{page_content, metadata}]}, each file's
    chunks held to the limits of an uploaded file (their number meets the chunk cap when they are stored)."""
    try:
        parsed = _DOCS.validate_python(json.loads(raw) if isinstance(raw, str) else raw)
    except (ValueError, ValidationError, RecursionError) as e:  # a deep nest overflows the parser's recursion
        raise KBError(f"docs must be a JSON object {{file name: [{{page_content, metadata}}]}}: "
                      f"{'nested too deeply' if isinstance(e, RecursionError) else e}") from None
    for name, items in parsed.items():  # metadata is stored with each chunk: it counts too
        stored = [t for d in items for t in (d.page_content, json.dumps(d.metadata, ensure_ascii=False))]
        limits.check_given_chunks(name, stored)
    return service.custom_chunks(parsed)


class CreateBody(BaseModel):
    knowledge_base_name: str = Name
    vector_store_type: str = "faiss"
    embed_model: str | None = None


class SearchBody(BaseModel):
    query: str = Field("", max_length=10_000)
    knowledge_base_name: str = Name
    top_k: TopK | None = None
    score_threshold: float | None = Field(None, ge=0, le=1, description="a distance: smaller is stricter")


class DeleteDocsBody(BaseModel):
    knowledge_base_name: str = Name
    file_names: list[str] = Field(max_length=10_000)
    delete_content: bool = False
    not_refresh_vs_cache: bool = False


class UpdateInfoBody(BaseModel):
    knowledge_base_name: str = Name
    kb_info: str = Field(max_length=2000)


class Chunking(BaseModel):
    chunk_size: ChunkSize | None = None
    chunk_overlap: ChunkOverlap | None = None
    zh_title_enhance: bool | None = None
    not_refresh_vs_cache: bool = False

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Chunking:
        """Refused once for the request, not once per file it would have re-read."""
        if self.chunk_size is not None and self.chunk_overlap is not None and self.chunk_overlap >= self.chunk_size:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be below chunk_size ({self.chunk_size})")
        return self

    def settings(self) -> tuple[int | None, int | None, bool | None]:
        return self.chunk_size, self.chunk_overlap, self.zh_title_enhance


class UpdateDocsBody(Chunking):
    knowledge_base_name: str = Name
    file_names: list[str] = Field(max_length=10_000)
    override_custom_docs: bool = False
    docs: str | dict[str, Any] = "{}"


class RecreateBody(Chunking):
    knowledge_base_name: str = Name
    allow_empty_kb: bool = True
    vs_type: str | None = None
    embed_model: str | None = None


@router.get("/list_knowledge_bases")
def list_knowledge_bases(services: ServicesDep) -> JSONResponse:
    return envelope(data=[k.name for k in services.kb.list()])


@router.post("/create_knowledge_base")
def create_knowledge_base(services: ServicesDep, body: CreateBody) -> JSONResponse:
    return envelope(*service.create(services.kb, body.knowledge_base_name, body.embed_model))


@router.post("/delete_knowledge_base")
def delete_knowledge_base(services: ServicesDep, knowledge_base_name: Annotated[str, Body(max_length=200)]
                          ) -> JSONResponse:
    if (refused := _refusal(services.kb, knowledge_base_name)) is not None:
        return refused
    services.kb.delete(knowledge_base_name)
    return envelope(msg=f"成功删除知识库 {knowledge_base_name}")


@router.get("/list_files")
def list_files(services: ServicesDep, knowledge_base_name: Annotated[str, Query(max_length=200)]) -> JSONResponse:
    if (refused := _refusal(services.kb, knowledge_base_name, [])) is not None:
        return refused
    return envelope(data=service.file_names(services.kb, knowledge_base_name))


@router.post("/search_docs")
def search_docs(services: ServicesDep, body: SearchBody) -> list[dict[str, Any]]:
    """A bare list of Documents, as Chatchat answers; an unknown base gives []."""
    if _refusal(services.kb, body.knowledge_base_name) is not None or not body.query:
        return []
    return service.search(services.kb, body.knowledge_base_name, body.query, body.top_k, body.score_threshold)


@router.post("/upload_docs")
def upload_docs(services: ServicesDep, files: Annotated[list[UploadFile], File(description="files")],
                knowledge_base_name: Annotated[str, Form(max_length=200)],
                override: Annotated[bool, Form()] = False, to_vector_store: Annotated[bool, Form()] = True,
                chunk_size: Annotated[ChunkSize | None, Form()] = None,
                chunk_overlap: Annotated[ChunkOverlap | None, Form()] = None,
                zh_title_enhance: Annotated[bool | None, Form()] = None,
                docs: Annotated[str, Form(max_length=8_000_000)] = "{}",
                not_refresh_vs_cache: Annotated[bool, Form()] = False) -> JSONResponse:
    """Files are always embedded (zhiku has no stored-but-unindexed state): `to_vector_store` is ignored."""
    if (refused := _refusal(services.kb, knowledge_base_name)) is not None:
        return refused
    limits = Limits.from_settings(services.settings)
    data = read_uploads(files, limits)
    failed = service.upload(services.kb, knowledge_base_name, data, override,
                           (chunk_size, chunk_overlap, zh_title_enhance), _docs(docs, limits))
    return envelope(msg="文件上传与向量化完成", data={"failed_files": failed})


@router.post("/delete_docs")
def delete_docs(services: ServicesDep, body: DeleteDocsBody) -> JSONResponse:
    if (refused := _refusal(services.kb, body.knowledge_base_name)) is not None:
        return refused
    failed = service.delete(services.kb, body.knowledge_base_name, body.file_names, body.delete_content)
    return envelope(msg="文件删除完成", data={"failed_files": failed})


@router.post("/update_info")
def update_info(services: ServicesDep, body: UpdateInfoBody) -> JSONResponse:
    if (refused := _refusal(services.kb, body.knowledge_base_name)) is not None:
        return refused
    services.kb.set_description(body.knowledge_base_name, body.kb_info)
    return envelope(msg="知识库介绍修改完成", data={"kb_info": body.kb_info})


@router.post("/update_docs")
def update_docs(services: ServicesDep, body: UpdateDocsBody) -> JSONResponse:
    if (refused := _refusal(services.kb, body.knowledge_base_name)) is not None:
        return refused
    failed = service.update(services.kb, body.knowledge_base_name, body.file_names, body.settings(),
                           body.override_custom_docs, _docs(body.docs, Limits.from_settings(services.settings)))
    return envelope(msg="更新文档完成", data={"failed_files": failed})


@router.get("/download_doc", response_model=None)
def download_doc(services: ServicesDep, knowledge_base_name: Annotated[str, Query(max_length=200)],
                 file_name: Annotated[str, Query(max_length=1000)], preview: bool = False) -> Response:
    """The stored original; KBService keeps every path inside the base's own folder."""
    if (refused := _refusal(services.kb, knowledge_base_name)) is not None:
        return refused
    doc = service.find(services.kb, knowledge_base_name, file_name)
    if doc is None:
        return envelope(500, f"{file_name} 读取文件失败")
    path = services.kb.document_path(knowledge_base_name, doc.id)
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, filename=path.name, media_type=media,
                        content_disposition_type="inline" if preview else "attachment")


@router.post("/recreate_vector_store", response_model=None)
def recreate_vector_store(services: ServicesDep, body: RecreateBody) -> StreamingResponse:
    """Every document read and embedded again with the given chunk settings; progress streamed per file."""
    kb, name = services.kb, body.knowledge_base_name
    problem = service.problem(kb, name)
    if problem is not None and problem[0] == 404:
        if not body.allow_empty_kb:
            return json_stream([{"code": 404, "msg": f"未找到知识库 ‘{name}’"}])
        kb.create(name)  # as Chatchat does: an empty base to fill
    elif problem is not None:
        return json_stream([{"code": problem[0], "msg": problem[1]}])
    return json_stream(service.recreate(kb, name, body.settings()))
