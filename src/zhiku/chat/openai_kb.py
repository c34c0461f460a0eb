"""Knowledge bases as OpenAI models: `model: "kb:<name>"` on /v1/chat/completions runs knowledge-base QA.

Any OpenAI client can ask a knowledge base. The answer is a normal chat completion; the cited sources
come in an extension field `sources` (a list of {index, document, page, heading, score, snippet, url,
...}): on the response object when not streaming, and on the final chunk (the one with finish_reason)
when streaming. /v1/models lists one `kb:<name>` entry per knowledge base (see `kb_model_ids`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response, StreamingResponse

from zhiku.chat.models import ChatRequest, ChatResult, HistoryMessage, closing
from zhiku.kb.types import KBNotFound

if TYPE_CHECKING:
    from zhiku.services import Services

PREFIX = "kb:"


def kb_model_ids(services: Services) -> list[str]:
    """Model ids for /v1/models: one per (non-temporary) knowledge base."""
    return [PREFIX + info.name for info in services.kb.list()]


def is_kb_model(model: object) -> bool:
    return isinstance(model, str) and model.startswith(PREFIX)


def _error(status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
           param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}},
                        status_code=status)


def _text(content: Any) -> str:
    """OpenAI message content: a string, or a list of parts of which the text parts count."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def to_request(body: dict[str, Any], kb_name: str) -> ChatRequest:
    """The ChatRequest for an OpenAI body; the last user message is the question, earlier turns history."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    turns = [m for m in messages if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
    if not turns or turns[-1].get("role") != "user":
        raise ValueError("the last message must be from the user")
    history = [HistoryMessage(role=m["role"], content=_text(m.get("content"))) for m in turns[:-1]]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    return ChatRequest(query=_text(turns[-1].get("content")), mode="kb", kb=kb_name, history=history,
                       history_turns=min(50, len(history) // 2) if body.get("history_turns") is None
                       else body["history_turns"], save=False,
                       temperature=body.get("temperature"), max_tokens=max_tokens,
                       top_k=body.get("top_k"), score_threshold=body.get("score_threshold"),
                       prompt_name=body.get("prompt_name"), language=body.get("language"))


def _usage(u: dict[str, Any]) -> dict[str, int]:
    p, c = int(u.get("prompt_tokens", 0)), int(u.get("completion_tokens", 0))
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


async def kb_chat_completion(services: Services, body: dict[str, Any]) -> Response:
    """Answer an OpenAI chat-completions body whose model is `kb:<name>`; a Response, streaming or not."""
    model = str(body.get("model", ""))
    name = model[len(PREFIX):]
    try:
        await run_in_threadpool(services.kb.get, name)
    except KBNotFound:
        return _error(404, f"The model '{model}' does not exist: no knowledge base named '{name}'",
                      code="model_not_found", param="model")
    try:
        request = to_request(body, name)
    except (ValueError, ValidationError) as e:
        return _error(400, str(e), param="messages")
    created = int(time.time())
    cid = "chatcmpl-" + uuid.uuid4().hex
    if body.get("stream"):
        return StreamingResponse(_stream(services, request, model, cid, created), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    result = await services.chat.answer(request)
    if result.error is not None:
        return _error(500, result.error, type_="server_error")
    return JSONResponse({
        "id": cid, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result.answer},
                     "finish_reason": _finish(result.finish_reason), "logprobs": None}],
        "usage": _usage(result.usage), "sources": result.sources})


async def _stream(services: Services, request: ChatRequest, model: str, cid: str, created: int
                  ) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
        return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    sources: list[dict[str, Any]] = []
    async with closing(services.chat.stream(request)) as events:
        async for event in events:
            if event.type == "delta":
                yield chunk({"content": event.data["text"]})
            elif event.type == "sources":
                sources = list(event.data["sources"])
            elif event.type == "done":
                yield chunk({}, _finish(event.data.get("finish_reason")), sources=sources,
                            usage=_usage(event.data.get("usage") or {}))
            elif event.type == "error":
                err = {"error": {"message": event.data.get("message"), "type": "server_error",
                                 "code": event.data.get("code")}}
                yield f"data: {json.dumps(err, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"


__all__ = ["PREFIX", "ChatResult", "is_kb_model", "kb_chat_completion", "kb_model_ids", "to_request"]
