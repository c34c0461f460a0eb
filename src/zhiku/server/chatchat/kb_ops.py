"""Chatchat's knowledge-base operations over KBService: its file-name addressing, its `failed_files`
reports and its message texts. No HTTP here; knowledge_base.py turns the results into envelopes.

Chatchat addresses a document by its file name inside `content/`. zhiku stores an uploaded file under its
cleaned base name and a synced or imported one under its relative path, so a name is looked up as given,
then as a cleaned relative path, then as a cleaned base name.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from zhiku.kb import names
from zhiku.kb.service import Chunks, KBService
from zhiku.kb.types import DocInfo, KBError, Progress
from zhiku.server.chatchat.wire import distance, relevance_threshold


class CustomDoc(BaseModel):
    """One of Chatchat's hand-made `docs` (a LangChain Document as JSON)."""

    page_content: str = Field(max_length=100_000)
    metadata: dict[str, Any] = Field(default_factory=dict)


def custom_chunks(docs: Mapping[str, Sequence[CustomDoc]]) -> dict[str, Chunks]:
    return {name: [(d.page_content, dict(d.metadata)) for d in items] for name, items in docs.items()}


def find(kb: KBService, name: str, file_name: str) -> DocInfo | None:
    candidates = [file_name]
    try:
        candidates += [names.safe_relative(file_name), names.sanitize_filename(file_name)]
    except KBError:
        candidates.append(names.sanitize_filename(file_name))
    for candidate in dict.fromkeys(candidates):
        doc = kb.document_by_path(name, candidate)
        if doc is not None:
            return doc
    return None


def file_names(kb: KBService, name: str) -> list[str]:
    """What Chatchat's list_files shows: the files that made it into the vector store."""
    return [d.path for d in kb.documents(name) if d.status != "failed"]


def _reindex(kb: KBService, name: str, doc: DocInfo, chunking: tuple[int | None, int | None, bool | None],
             chunks: Chunks | None, progress: Progress | None = None) -> str | None:
    """Re-read (or store the given chunks for) one document; its error, if it failed."""
    try:
        done = kb.reindex_document(name, doc.id, *chunking, chunks=chunks, progress=progress)
    except KBError as e:
        return str(e)
    return (done.error or "failed") if done.status == "failed" else None


def _reindex_with_pages(kb: KBService, name: str, doc: DocInfo,
                        chunking: tuple[int | None, int | None, bool | None], chunks: Chunks | None,
                        page_object: Callable[[int, int], dict[str, Any]]
                        ) -> Generator[dict[str, Any], None, str | None]:
    """_reindex on a thread of its own, yielding page_object(pages done, pages) while OCR reads the document,
    so that a long scan shows progress; returns its error, if it failed."""
    pages: queue.Queue[tuple[int, int] | None] = queue.Queue()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["error"] = _reindex(kb, name, doc, chunking, chunks,
                                        lambda what, done, total: pages.put((done, total)) if what == "ocr" else None)
        except BaseException as e:  # noqa: BLE001 - raised again in the stream's thread
            outcome["raised"] = e
        finally:
            pages.put(None)

    threading.Thread(target=run, name="zhiku-chatchat-recreate", daemon=True).start()
    while (page := pages.get()) is not None:
        yield page_object(*page)
    if "raised" in outcome:
        raise outcome["raised"]
    return outcome.get("error")


def upload(kb: KBService, name: str, files: list[tuple[str, bytes]], override: bool,
           chunking: tuple[int | None, int | None, bool | None], docs: dict[str, Chunks]) -> dict[str, str]:
    """Chatchat's upload_docs: a file already there (same name and size) is refused unless `override`;
    `docs` replace the parsing of the files they name. Returns failed_files {name: reason}."""
    failed: dict[str, str] = {}
    todo: list[tuple[str, bytes]] = []
    for filename, data in files:
        existing = find(kb, name, filename)
        if existing is not None and not override and existing.size == len(data):
            failed[filename] = f"文件 {filename} 已存在。"
        else:
            todo.append((filename, data))
    if todo:
        stored = {d.path: d for d in kb.add_uploads(name, todo, None, *chunking, custom_chunks=docs)}
        for filename, _ in todo:
            doc = stored.get(names.sanitize_filename(filename))
            if doc is None or doc.status == "failed":
                failed[filename] = "not stored" if doc is None else (doc.error or "failed")
    uploaded = {filename for filename, _ in files}
    failed.update(update(kb, name, [], chunking, True, {k: v for k, v in docs.items() if k not in uploaded}))
    return failed


def update(kb: KBService, name: str, files: Sequence[str], chunking: tuple[int | None, int | None, bool | None],
           override_custom_docs: bool, docs: dict[str, Chunks]) -> dict[str, str]:
    """Chatchat's update_docs: read the named files again with the given chunk settings; a file whose chunks
    were given by hand keeps them unless `override_custom_docs`; `docs` set a file's chunks."""
    failed: dict[str, str] = {}
    for file_name in dict.fromkeys([*files, *docs]):
        doc = find(kb, name, file_name)
        if doc is None:
            failed[file_name] = f"未找到文件 {file_name}"
            continue
        if file_name not in docs and doc.loader == "custom" and not override_custom_docs:
            continue
        error = _reindex(kb, name, doc, chunking, docs.get(file_name))
        if error is not None:
            failed[file_name] = error
    return failed


def delete(kb: KBService, name: str, files: Sequence[str]) -> dict[str, str]:
    failed: dict[str, str] = {}
    for file_name in dict.fromkeys(files):  # a name given twice is deleted once, not reported as missing
        doc = find(kb, name, file_name)
        if doc is None:
            failed[file_name] = f"未找到文件 {file_name}"
            continue
        try:
            kb.delete_document(name, doc.id)
        except KBError as e:
            failed[file_name] = f"{file_name} 文件删除失败，错误信息：{e}"
    return failed


def recreate(kb: KBService, name: str, chunking: tuple[int | None, int | None, bool | None]
             ) -> Generator[dict[str, Any], None, None]:
    """Chatchat's recreate_vector_store progress: every document read and embedded again, one object per
    file, and while OCR reads a scan, one per page (Chatchat's fields for the files, `ocr` for the pages, which
    Chatchat's client ignores). Hand-made chunks are embedded again as they are (Chatchat would lose them)."""
    docs = kb.documents(name)
    for i, doc in enumerate(docs, 1):
        chunks = None
        if doc.loader == "custom":
            chunks = [(c["text"], c["metadata"]) for c in kb.chunks(name, doc.id)]
        def page(done: int, total: int, i: int = i, doc: DocInfo = doc) -> dict[str, Any]:
            return {"code": 200, "msg": f"({i} / {len(docs)}): {doc.path}: OCR {done} / {total} pages",
                    "total": len(docs), "finished": i - 1, "doc": doc.path, "ocr": {"done": done, "total": total}}

        error = yield from _reindex_with_pages(kb, name, doc, chunking, chunks, page)
        if error is None:
            yield {"code": 200, "msg": f"({i} / {len(docs)}): {doc.path}", "total": len(docs), "finished": i,
                   "doc": doc.path}
        else:
            yield {"code": 500, "msg": f"添加文件‘{doc.path}’到知识库‘{name}’时出错：{error}。已跳过。"}


def search(kb: KBService, name: str, query: str, top_k: int | None, max_distance: float | None
           ) -> list[dict[str, Any]]:
    """Chatchat's search_docs: LangChain Documents with a distance `score`; zhiku's own score as `relevance`.
    Unset, top_k and the threshold are the configured ones."""
    threshold = None if max_distance is None else relevance_threshold(max_distance)
    hits = kb.search(name, query, top_k=top_k, score_threshold=threshold)
    return [{"page_content": h.text, "metadata": {**h.metadata, "source": h.document}, "type": "Document",
             "score": distance(h.score), "relevance": h.score} for h in hits]
