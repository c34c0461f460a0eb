"""The OpenAI-compatible API at /v1: chat/completions, completions, models, embeddings.

Routes only translate: validate the body, call LLMService (or KBService for embeddings), and shape the
answer or the SSE stream as OpenAI does. The first delta is awaited before the response starts, so a
full queue, an unknown model or an over-long prompt still gets a proper status code.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from zhiku import __version__
from zhiku.llm.base import ChatDelta, FinishReason, GenerationParams, Usage
from zhiku.server.deps import get_services
from zhiku.server.errors import APIError, api_error_for
from zhiku.services import Services

router = APIRouter(prefix="/v1", tags=["openai"])
FINGERPRINT = f"zhiku-{__version__}"


# -- request bodies ------------------------------------------------------------------------------

class _Body(BaseModel):
    # Unknown fields are ignored, as OpenAI-compatible servers commonly do (clients send `user`, ...).
    model_config = ConfigDict(extra="ignore")


class Message(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")  # llama-cpp-python's json_object extension


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    model: str | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1)
    logprobs: Any = None


class ChatCompletionRequest(_Sampling):
    # extra fields are kept: `kb:<name>` models read knowledge-base options (top_k, ...) from the body
    model_config = ConfigDict(extra="allow")

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    echo: bool = False
    best_of: int | None = Field(None, ge=1)
    suffix: str | None = None


class EmbeddingRequest(_Body):
    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


# -- helpers -------------------------------------------------------------------------------------

def _params(services: Services, body: _Sampling, max_tokens: int | None,
            extra: dict[str, Any] | None = None) -> GenerationParams:
    s = services.settings
    if body.n > 1:
        raise APIError(400, "n > 1 is not supported here; send separate requests", param="n")
    if body.logprobs:
        raise APIError(400, "logprobs are not supported", param="logprobs")
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stop) > 16:
        raise APIError(400, "at most 16 stop sequences", param="stop")
    return GenerationParams(
        max_tokens=min(max_tokens or s.default_max_tokens, s.max_tokens_cap),
        temperature=s.temperature if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        stop=stop, seed=body.seed,
        presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
        **(extra or {}),
    )


def _usage(u: Usage | None) -> dict[str, int]:
    u = u or Usage()
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens}


async def _first(agen: AsyncGenerator[ChatDelta, None], request: Request) -> ChatDelta:
    """Start generation and wait for the first delta; errors raised here become HTTP statuses.
    A client that leaves while its request waits in the queue gives up its place at once."""
    task = asyncio.ensure_future(agen.__anext__())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise APIError(499, "the client closed the request", code="client_closed_request")
    except BaseException:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await agen.aclose()
        raise


def _sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def _stream(first: ChatDelta, agen: AsyncGenerator[ChatDelta, None], make_chunk: Any,
                  include_usage: bool, usage_chunk: Any, head: list[dict[str, Any]]) -> AsyncIterator[str]:
    """SSE frames for a generation. Closing this (client gone) closes `agen`, which stops the model."""
    try:
        for obj in head:
            yield _sse(obj)
        delta: ChatDelta | None = first
        usage: Usage | None = None
        while delta is not None:
            usage = delta.usage or usage
            if delta.text or delta.tool_calls or delta.finish_reason:
                yield _sse(make_chunk(delta))
            if delta.finish_reason:
                break
            try:
                delta = await agen.__anext__()
            except StopAsyncIteration:
                delta = None
        if include_usage:
            yield _sse(usage_chunk(usage))
        yield "data: [DONE]\n\n"
    except Exception as e:  # after the headers are sent an error can only travel as an event
        err = api_error_for(e)
        yield _sse({"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}})
    finally:
        await agen.aclose()


async def _collect(first: ChatDelta, agen: AsyncGenerator[ChatDelta, None]) -> tuple[str, list[dict[str, Any]], FinishReason, Usage]:
    parts: list[str] = []
    calls: list[dict[str, Any]] = []
    finish: FinishReason = "stop"
    usage = Usage()
    try:
        delta: ChatDelta | None = first
        while delta is not None:
            parts.append(delta.text)
            calls.extend(delta.tool_calls or [])
            if delta.finish_reason:
                finish, usage = delta.finish_reason, delta.usage or usage
                break
            try:
                delta = await agen.__anext__()
            except StopAsyncIteration:
                delta = None
    finally:
        await agen.aclose()
    return "".join(parts), calls, finish, usage


def _stream_response(gen: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(gen, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# -- routes --------------------------------------------------------------------------------------

@router.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request,
                           services: Services = Depends(get_services)) -> Response | dict[str, Any]:
    if body.model and body.model.startswith("kb:"):
        return await _kb_chat(services, body)
    if body.response_format is not None and body.response_format.type == "json_schema" \
            and not isinstance((body.response_format.json_schema or {}).get("schema"), dict):
        raise APIError(400, "response_format json_schema needs json_schema.schema (an object)",
                       param="response_format")
    rf = body.response_format.model_dump(by_alias=True, exclude_none=True) if body.response_format else None
    params = _params(services, body, body.max_completion_tokens or body.max_tokens,
                     {"response_format": rf, "tools": body.tools or None, "tool_choice": body.tool_choice})
    messages = [m.model_dump(exclude_none=True) for m in body.messages]
    llm = services.llm
    model = body.model or llm.model_id
    agen = llm.chat(messages, params, model=model)
    first = await _first(agen, request)
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": FINGERPRINT}

    if body.stream:
        def chunk(d: ChatDelta) -> dict[str, Any]:
            delta: dict[str, Any] = {}
            if d.text:
                delta["content"] = d.text
            if d.tool_calls:
                delta["tool_calls"] = [{"index": i, **c} for i, c in enumerate(d.tool_calls)]
            return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                         "finish_reason": d.finish_reason}]}

        def usage_chunk(u: Usage | None) -> dict[str, Any]:
            return {**base, "choices": [], "usage": _usage(u)}

        head = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                      "logprobs": None, "finish_reason": None}]}]
        include = bool(body.stream_options and body.stream_options.include_usage)
        return _stream_response(_stream(first, agen, chunk, include, usage_chunk, head))

    text, calls, finish, usage = await _collect(first, agen)
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    return {"id": cid, "object": "chat.completion", "created": created, "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": _usage(usage)}


async def _kb_chat(services: Services, body: ChatCompletionRequest) -> Response:
    """`model: "kb:<name>"` answers from a knowledge base. The chat package implements it as
    `zhiku.chat.openai_kb.kb_chat_completion(services, body: dict)`, returning a Response, an
    OpenAI-shaped dict, or an async iterator of chunk dicts (streamed here as SSE)."""
    try:
        from zhiku.chat.openai_kb import kb_chat_completion
    except ImportError as e:
        raise APIError(404, f"knowledge-base chat is not available: {e}", param="model",
                       code="model_not_found") from e
    result: Any = kb_chat_completion(services, body.model_dump(exclude_none=True, by_alias=True))
    if inspect.isawaitable(result):
        result = await result
    if isinstance(result, Response):
        return result
    if isinstance(result, dict):
        return JSONResponse(result)

    async def frames() -> AsyncIterator[str]:
        async for obj in result:
            yield _sse(obj)
        yield "data: [DONE]\n\n"

    return _stream_response(frames())


@router.post("/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request,
                      services: Services = Depends(get_services)) -> Response | dict[str, Any]:
    if isinstance(body.prompt, list):
        if len(body.prompt) != 1:
            raise APIError(400, "send one prompt per request", param="prompt")
        prompt = body.prompt[0]
    else:
        prompt = body.prompt
    if body.echo or (body.best_of or 1) > 1 or body.suffix:
        raise APIError(400, "echo, best_of and suffix are not supported", param="echo")
    params = _params(services, body, body.max_tokens)
    llm = services.llm
    model = body.model or llm.model_id
    agen = llm.complete(prompt, params, model=model)
    first = await _first(agen, request)
    cid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    base = {"id": cid, "object": "text_completion", "created": created, "model": model,
            "system_fingerprint": FINGERPRINT}
    if body.stream:
        def chunk(d: ChatDelta) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "text": d.text, "logprobs": None,
                                         "finish_reason": d.finish_reason}]}

        def usage_chunk(u: Usage | None) -> dict[str, Any]:
            return {**base, "choices": [], "usage": _usage(u)}

        include = bool(body.stream_options and body.stream_options.include_usage)
        return _stream_response(_stream(first, agen, chunk, include, usage_chunk, []))
    text, _, finish, usage = await _collect(first, agen)
    return {**base, "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
            "usage": _usage(usage)}


@router.get("/models")
def list_models(services: Services = Depends(get_services)) -> dict[str, Any]:
    return {"object": "list", "data": [_model_card(m) for m in _all_models(services)]}


@router.get("/models/{model_id:path}")
def get_model(model_id: str, services: Services = Depends(get_services)) -> dict[str, Any]:
    if model_id not in _all_models(services):
        raise APIError(404, f"model {model_id!r} is not served here", param="model", code="model_not_found")
    return _model_card(model_id)


def _all_models(services: Services) -> list[str]:
    ids = list(services.llm.model_ids())
    try:  # knowledge bases answer as models too; the KB layer may be absent or empty
        ids += [f"kb:{kb.name}" for kb in services.kb.list()]
    except Exception:  # noqa: BLE001 - listing models must not fail because of the KB store
        pass
    return ids


def _model_card(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "zhiku"}


@router.post("/embeddings")
async def embeddings(body: EmbeddingRequest, services: Services = Depends(get_services)) -> dict[str, Any]:
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if not texts or len(texts) > 2048:
        raise APIError(400, "input must hold 1 to 2048 strings", param="input")
    if any(not t for t in texts):
        raise APIError(400, "input strings must not be empty", param="input")
    kb = services.kb
    vectors = np.asarray(await run_in_threadpool(kb.embed, texts, body.model), dtype=np.float32)
    if body.dimensions is not None and body.dimensions != vectors.shape[1]:
        raise APIError(400, f"this embedder has {vectors.shape[1]} dimensions", param="dimensions")
    data = []
    for i, v in enumerate(vectors):
        emb: Any = base64.b64encode(v.astype("<f4").tobytes()).decode() if body.encoding_format == "base64" \
            else v.tolist()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    tokens = sum(max(1, len(t) // 4) for t in texts)  # the embedders do not report token counts
    return {"object": "list", "data": data, "model": body.model or services.settings.embedder,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
