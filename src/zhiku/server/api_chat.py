"""/api/chat (every mode, SSE or one JSON), file uploads, templates, feedback, and /api/conversations.

Thin: each route hands over to ChatService. Stream protocol: `data: {"type": ..., ...}\\n\\n` per event
(delta, sources, tool_call, tool_result, done, error), then `data: [DONE]`; an `error` event carries the
same `code` (and `kind`) as the HTTP error a one-JSON answer gets for it (server/errors.py). Service
errors (ChatError, KBError, ...) become HTTP statuses in server/errors.py too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from zhiku.chat.types import (
    SSE_DONE,
    ChatEvent,
    ChatRequest,
    ChatResult,
    FeedbackRequest,
    RenameRequest,
    closing,
)
from zhiku.limits import SQL_INT_MAX, Limits
from zhiku.server.deps import get_services
from zhiku.server.disconnect import unless_client_leaves
from zhiku.server.limits import read_uploads
from zhiku.server.links import with_links
from zhiku.services import Services

router = APIRouter(tags=["chat"])
ServicesDep = Annotated[Services, Depends(get_services)]
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _linked(event: ChatEvent) -> ChatEvent:
    if event.type == "sources":
        return ChatEvent("sources", {**event.data, "sources": with_links(event.data["sources"])})
    return event


async def _sse(events: AsyncIterator[ChatEvent]) -> AsyncIterator[str]:
    async with closing(events) as stream:
        async for event in stream:
            yield _linked(event).to_sse()
    yield SSE_DONE


async def _respond(services: Services, body: ChatRequest, request: Request) -> StreamingResponse | ChatResult:
    if body.stream:
        return StreamingResponse(_sse(services.chat.stream(body)), media_type="text/event-stream",
                                 headers=SSE_HEADERS)
    # an error is raised: it gets its HTTP status; a client that leaves stops the generation
    result = await unless_client_leaves(request, services.chat.answer(body))
    result.sources = with_links(result.sources)
    return result


@router.post("/api/chat/files", summary="Upload files for file chat (a temporary knowledge base)")
async def upload_files(services: ServicesDep, files: Annotated[list[UploadFile], File()],
                       conversation_id: Annotated[str | None, Form()] = None) -> dict[str, Any]:
    payload = await run_in_threadpool(read_uploads, files, Limits.from_settings(services.settings))
    return await run_in_threadpool(services.chat.upload_files, payload, conversation_id)


@router.get("/api/chat/templates", summary="Prompt template names per mode and the file to edit them in")
def templates(services: ServicesDep) -> dict[str, Any]:
    return services.chat.templates()


@router.post("/api/chat/feedback", summary="Thumbs up (1) or down (-1) on an answer, with a reason")
def feedback(services: ServicesDep, body: FeedbackRequest) -> dict[str, Any]:
    services.chat.add_feedback(body.message_id, body.score, body.reason)
    return {"ok": True}


@router.post("/api/chat", summary="Ask in any mode (mode in the body)", response_model=None)
async def chat(services: ServicesDep, body: ChatRequest, request: Request) -> StreamingResponse | ChatResult:
    return await _respond(services, body, request)


@router.post("/api/chat/{mode}", summary="Ask in one mode: llm, kb, file, search or agent", response_model=None)
async def chat_mode(services: ServicesDep, mode: Literal["llm", "kb", "file", "search", "agent"],
                    body: ChatRequest, request: Request) -> StreamingResponse | ChatResult:
    return await _respond(services, body.model_copy(update={"mode": mode}), request)


@router.get("/api/conversations", summary="Conversations, most recent first")
def list_conversations(services: ServicesDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                       offset: Annotated[int, Query(ge=0, le=SQL_INT_MAX)] = 0) -> list[dict[str, Any]]:
    return services.chat.list_conversations(limit, offset)


@router.get("/api/conversations/{conversation_id}", summary="A conversation with its messages")
def get_conversation(services: ServicesDep, conversation_id: str) -> dict[str, Any]:
    conversation = services.chat.get_conversation(conversation_id)
    for m in conversation["messages"]:
        m["sources"] = with_links(m["sources"])
    return conversation


@router.patch("/api/conversations/{conversation_id}", summary="Rename a conversation")
def rename_conversation(services: ServicesDep, conversation_id: str, body: RenameRequest) -> dict[str, Any]:
    services.chat.rename_conversation(conversation_id, body.title)
    return {"ok": True}


@router.delete("/api/conversations/{conversation_id}", summary="Delete a conversation (and its uploaded files)")
async def delete_conversation(services: ServicesDep, conversation_id: str) -> dict[str, Any]:
    await run_in_threadpool(services.chat.delete_conversation, conversation_id)
    return {"ok": True}


@router.get("/api/conversations/{conversation_id}/export", summary="A conversation as Markdown",
            response_class=PlainTextResponse)
def export_conversation(services: ServicesDep, conversation_id: str) -> PlainTextResponse:
    text = services.chat.export_markdown(conversation_id)
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="conversation-{conversation_id[:16]}.md"'})
