"""Langchain-Chatchat 0.2 over zhiku's services, translated here once: its knowledge-base names and file-name
addressing, its defaults, its scores and its messages (its answers' stream objects too). No routes: chat.py,
knowledge_base.py and misc.py turn what this returns into envelopes and streams.

Names. A name zhiku refuses is Chatchat's 403 (with zhiku's reason), an unknown base its 404 "未找到知识库".
Defaults. A field Chatchat fills from its configs (VECTOR_SEARCH_TOP_K, SCORE_THRESHOLD, CHUNK_SIZE...) is
left unset and zhiku's settings or the base's own give it (config.Settings.retrieval, KBService).
Scores. Chatchat's `score_threshold` and `search_docs` scores are distances (FAISS L2 over normalised
vectors: smaller is closer, and a threshold of 1 or more keeps everything). zhiku scores are relevances in
[0, 1], higher is better. The one rule: distance = 1 - relevance, so a Chatchat threshold t keeps the hits
whose relevance is at least 1 - t (t >= 1 keeps all, t = 0 only perfect matches).
Files. Chatchat addresses a document by its file name inside `content/`. zhiku stores an uploaded file under
its cleaned base name and a synced or imported one under its relative path, so a name is looked up as given,
then as a cleaned relative path, then as a cleaned base name. Chatchat's delete_docs takes a file out of the
vector store but keeps it in `content/` unless `delete_content`: zhiku keeps such a document UNINDEXED (its
original stays, it is neither listed nor searched) and recreate_vector_store reads it again.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from zhiku.chat.sources import KBSource, Source, sources_from
from zhiku.chat.types import ChatEvent
from zhiku.embed.registry import SIMPLE
from zhiku.kb import names
from zhiku.kb.service import Chunks, KBService
from zhiku.kb.types import UNINDEXED, DocInfo, InvalidName, KBError, KBNotFound, Progress
from zhiku.server.errors import status_of

# zhiku's search engines; Chatchat's bing needs a key zhiku never has, its others are not zhiku's.
SEARCH_ENGINES = ("searxng", "duckduckgo")
Problem = tuple[int, str]  # a Chatchat refusal: (code, msg)


def relevance_threshold(distance: float | None) -> float | None:
    """zhiku's relevance threshold for a Chatchat distance threshold (unset: the configured one)."""
    return None if distance is None else min(1.0, max(0.0, 1.0 - distance))


def distance(relevance: float) -> float:
    """Chatchat's distance for a zhiku relevance."""
    return round(1.0 - min(1.0, max(0.0, relevance)), 6)


def problem(kb: KBService, name: str) -> Problem | None:
    """A name zhiku refuses (403, with the reason) or a base that does not exist (404), else None."""
    try:
        names.validate_kb_name(name)
        kb.get(name)
    except InvalidName as e:
        return 403, str(e)
    except KBNotFound:
        return 404, f"未找到知识库 {name}"
    return None


def create(kb: KBService, name: str, embed_model: str | None) -> Problem:
    """Chatchat's create_knowledge_base: (code, msg). Its embedding model names are not zhiku's: only
    zhiku's own simple embedder names are taken, any other means the configured embedder."""
    if not name.strip():
        return 404, "知识库名称不能为空，请重新填写知识库名称"
    try:
        names.validate_kb_name(name)
    except InvalidName as e:
        return 403, str(e)
    if name in {k.name for k in kb.list(include_temporary=True)}:
        return 404, f"已存在同名知识库 {name}"
    kb.create(name, embedder=embed_model if embed_model in SIMPLE else None)
    return 200, f"已新增知识库 {name}"


def search_engine_problem(engine: str) -> Problem | None:
    """Chatchat's refusal of a search engine zhiku cannot use, else None."""
    if engine == "bing":
        return 404, "要使用Bing搜索引擎，需要设置 `BING_SUBSCRIPTION_KEY`"
    if engine not in SEARCH_ENGINES:
        return 404, f"未支持搜索引擎 {engine}"
    return None


def cited(source: Source, link: str) -> str:
    """A source as Chatchat's `docs` render it: `出处 [n] [name](link)`, then the passage (a document's whole
    passage as its hit held it; a web page's snippet, named by its link)."""
    if isinstance(source, KBSource):
        name, text = source.document, source.text or source.snippet
    else:
        name, text = link, source.snippet
    return f"出处 [{source.index}] [{name}]({link}) \n\n{text}\n\n"


# ---- answers: zhiku's chat events as Chatchat's stream objects ---------------------------------------------

NO_HIT = "<span style='color:red'>未找到相关文档,该回答为大模型自身能力解答！</span>"


def error_object(event: ChatEvent) -> dict[str, Any]:
    err = event.exception()
    return {"code": status_of(err), "msg": err.message}


async def llm_objects(events: AsyncIterator[ChatEvent], cid: str, stream: bool) -> AsyncIterator[dict[str, Any]]:
    answer = ""
    async for event in events:
        if event.type == "error":
            yield error_object(event)
            return
        if event.type == "delta":
            if stream:
                yield {"text": event.data["text"], "chat_history_id": cid}
            answer += event.data["text"]
    if not stream:
        yield {"text": answer, "chat_history_id": cid}


async def qa_objects(events: AsyncIterator[ChatEvent], stream: bool,
                     docs_of: Callable[[list[Source]], Awaitable[list[str]]], no_hit: list[str]
                     ) -> AsyncIterator[dict[str, Any]]:
    """Answer pieces, then the docs (Chatchat sends them last); `docs_of` renders zhiku's sources."""
    answer, docs = "", no_hit
    async for event in events:
        if event.type == "error":
            yield error_object(event)
            return
        if event.type == "sources":
            docs = await docs_of(sources_from(event.data.get("sources")))
        elif event.type == "delta":  # a correction: its note streams, `replace` is the answer from then on
            if stream:
                yield {"answer": event.data["text"]}
            answer = event.data["replace"] if "replace" in event.data else answer + event.data["text"]
    yield {"docs": docs} if stream else {"answer": answer, "docs": docs}


async def agent_objects(events: AsyncIterator[ChatEvent], stream: bool) -> AsyncIterator[dict[str, Any]]:
    answer, final = "", ""
    calls: dict[str, dict[str, Any]] = {}
    async for event in events:
        obj: dict[str, Any] | None = None
        if event.type == "error":
            yield error_object(event)
            return
        if event.type == "tool_call":
            calls[str(event.data.get("id"))] = event.data
            if event.data.get("thought"):
                obj = {"answer": f"{event.data['thought']}\n"}
        elif event.type == "tool_result":
            call = calls.get(str(event.data.get("id")), {})
            obj = {"tools": [f"工具名称: {event.data.get('name')}",
                             f"工具状态: {'调用成功' if event.data.get('ok', True) else '调用失败'}",
                             f"工具输入: {json.dumps(call.get('arguments', {}), ensure_ascii=False)}",
                             f"工具输出: {event.data.get('result')}"]}
        elif event.type == "delta":
            final += event.data["text"]
            obj = {"final_answer": event.data["text"]}
        if obj is not None and stream:
            yield obj
        elif obj is not None and "final_answer" not in obj:
            answer += obj.get("answer", "") + "\n".join(obj.get("tools", []))
    if not stream:
        yield {"answer": answer, "final_answer": final}


# ---- knowledge-base operations ---------------------------------------------------------------------------

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
    return [d.path for d in kb.documents(name) if d.status not in ("failed", UNINDEXED)]


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


def delete(kb: KBService, name: str, files: Sequence[str], delete_content: bool) -> dict[str, str]:
    """Chatchat's delete_docs: each file out of the vector store, and out of the base too if `delete_content`
    (as in Chatchat, a file already out of the store is reported missing, and its content still deleted)."""
    failed: dict[str, str] = {}
    for file_name in dict.fromkeys(files):  # a name given twice is deleted once, not reported as missing
        doc = find(kb, name, file_name)
        if doc is None or doc.status == UNINDEXED:
            failed[file_name] = f"未找到文件 {file_name}"
            if doc is None or not delete_content:
                continue
        try:
            if delete_content:
                kb.delete_document(name, doc.id)
            else:
                kb.unindex_document(name, doc.id)
        except KBError as e:
            failed[file_name] = f"{file_name} 文件删除失败，错误信息：{e}"
    return failed


def recreate(kb: KBService, name: str, chunking: tuple[int | None, int | None, bool | None]
             ) -> Generator[dict[str, Any], None, None]:
    """Chatchat's recreate_vector_store progress: every document read and embedded again, one object per
    file, and while OCR reads a scan, one per page (Chatchat's fields for the files, `ocr` for the pages, which
    Chatchat's client ignores). Documents taken out of the store but kept (UNINDEXED) are read again, as Chatchat
    reads every file of `content/`; hand-made chunks are embedded again as they are (Chatchat would lose them)."""
    docs = kb.documents(name)
    for i, doc in enumerate(docs, 1):
        chunks = None
        if doc.loader == "custom" and doc.status != UNINDEXED:
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
    hits = kb.search(name, query, top_k=top_k, score_threshold=relevance_threshold(max_distance))
    return [{"page_content": h.text, "metadata": {**h.metadata, "source": h.document}, "type": "Document",
             "score": distance(h.score), "relevance": h.score} for h in hits]
