"""The OpenAI-compatible API at /v1: chat/completions, completions, models, embeddings.

Routes only translate: validate the body, call LLMService (KBService for embeddings, ChatService for
`kb:<name>` models), and hand the result to the wire format (openai_wire.py). The first delta is awaited
before the response starts, so a full queue, an unknown model or an over-long prompt still gets a proper
status code, for a plain model as for a knowledge base.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from zhiku.chat.types import ChatRequest, closing
from zhiku.errors import InvalidRequest, NotFound, as_error
from zhiku.kb.types import KBNotFound
from zhiku.llm.base import ChatDelta, FinishReason, GenerationParams, UnknownModelError, Usage
from zhiku.server.deps import get_services
from zhiku.server.disconnect import unless_client_leaves
from zhiku.server.links import with_links
from zhiku.server.openai_wire import (
    SSE_DONE,
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    Reply,
    Sampling,
    error_frame,
    kb_model_id,
    kb_name_of,
    sse,
    stream_response,
)
from zhiku.services import Services

router = APIRouter(prefix="/v1", tags=["openai"])
Deltas = AsyncGenerator[ChatDelta, None]


# -- helpers -------------------------------------------------------------------------------------

def _params(services: Services, body: Sampling, max_tokens: int | None,
            extra: dict[str, Any] | None = None) -> GenerationParams:
    s = services.settings
    if body.n > 1:
        raise InvalidRequest("n > 1 is not supported here; send separate requests", param="n")
    if body.logprobs:
        raise InvalidRequest("logprobs are not supported", param="logprobs")
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stop) > 16:
        raise InvalidRequest("at most 16 stop sequences", param="stop")
    return GenerationParams(
        max_tokens=min(max_tokens or s.default_max_tokens, s.max_tokens_cap),
        temperature=s.temperature if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        stop=stop, seed=body.seed,
        presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
        **(extra or {}),
    )


async def _first(agen: Deltas) -> ChatDelta:
    """Start generation and wait for the first delta; errors raised here become HTTP statuses. Run under
    unless_client_leaves: a client that leaves while its request waits in the queue gives up its place."""
    try:
        return await agen.__anext__()
    except BaseException:
        await agen.aclose()
        raise


async def _frames(first: ChatDelta, agen: Deltas, reply: Reply, include_usage: bool) -> AsyncIterator[str]:
    """SSE frames for a generation. Closing this (client gone) closes `agen`, which stops the model."""
    try:
        for obj in reply.head():
            yield sse(obj)
        delta: ChatDelta | None = first
        usage: Usage | None = None
        while delta is not None:
            usage = delta.usage or usage
            if delta.text or delta.tool_calls or delta.finish_reason:
                yield sse(reply.chunk(delta))
            if delta.finish_reason:
                break
            delta = await anext(agen, None)
        if include_usage:
            yield sse(reply.usage_chunk(usage))
        yield SSE_DONE
    except Exception as e:  # after the headers are sent an error can only travel as an event
        yield error_frame(as_error(e))
    finally:
        await agen.aclose()


async def _whole(agen: Deltas, reply: Reply) -> dict[str, Any]:
    parts: list[str] = []
    calls: list[dict[str, Any]] = []
    finish: FinishReason = "stop"
    usage = Usage()
    try:
        async for delta in agen:
            parts.append(delta.text)
            calls.extend(delta.tool_calls or [])
            if delta.finish_reason:
                finish, usage = delta.finish_reason, delta.usage or usage
                break
    finally:
        await agen.aclose()
    return reply.whole("".join(parts), calls, finish, usage)


async def _respond(agen: Deltas, request: Request, body: Sampling, reply: Reply) -> Response | dict[str, Any]:
    """A client that leaves stops the generation: while the first delta is awaited (stream) or the whole
    answer (no stream) by unless_client_leaves, afterwards by the stream's closing."""
    if body.stream:
        first = await unless_client_leaves(request, _first(agen))
        return stream_response(_frames(first, agen, reply, body.include_usage))
    return await unless_client_leaves(request, _whole(agen, reply))


async def _kb_deltas(services: Services, question: ChatRequest, sources: list[dict[str, Any]],
                     whole: bool = False) -> Deltas:
    """A knowledge-base answer as deltas, like a model's; its sources are put into `sources` as they come.
    An `error` event is raised as its typed error, so it gets its status while the response can still
    have one (a full queue: 503 + Retry-After). A correction (a delta with `replace`) streams as its visible
    note; `whole` (a non-streaming response) gets the corrected answer alone, as one delta."""
    answer = ""
    async with closing(services.chat.stream(question)) as events:
        async for event in events:
            if event.type == "delta" and whole:
                answer = event.data["replace"] if "replace" in event.data else answer + event.data["text"]
            elif event.type == "delta":
                yield ChatDelta(text=event.data["text"])
            elif event.type == "sources":
                sources[:] = with_links(event.data["sources"])
            elif event.type == "error":
                raise event.exception()
            elif event.type == "done":
                if whole and answer:
                    yield ChatDelta(text=answer)
                u = event.data.get("usage") or {}
                finish: FinishReason = "length" if event.data.get("finish_reason") == "length" else "stop"
                yield ChatDelta(finish_reason=finish, usage=Usage(int(u.get("prompt_tokens", 0)),
                                                                 int(u.get("completion_tokens", 0))))
                return


# -- routes --------------------------------------------------------------------------------------

@router.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request,
                           services: Services = Depends(get_services)) -> Response | dict[str, Any]:
    kb_name = kb_name_of(body.model)
    if kb_name is not None:
        return await _kb_chat(services, body, request, kb_name)
    if body.response_format is not None and body.response_format.type == "json_schema" \
            and not isinstance((body.response_format.json_schema or {}).get("schema"), dict):
        raise InvalidRequest("response_format json_schema needs json_schema.schema (an object)",
                             param="response_format")
    rf = body.response_format.model_dump(by_alias=True, exclude_none=True) if body.response_format else None
    params = _params(services, body, body.max_completion_tokens or body.max_tokens,
                     {"response_format": rf, "tools": body.tools or None, "tool_choice": body.tool_choice})
    messages = [m.model_dump(exclude_none=True) for m in body.messages]
    model = body.model or services.llm.model_id
    return await _respond(services.llm.chat(messages, params, model=model), request, body, Reply(model))


async def _kb_chat(services: Services, body: ChatCompletionRequest, request: Request,
                   kb_name: str) -> Response | dict[str, Any]:
    """`model: "kb:<name>"` answers from a knowledge base; its sources come in the extension field
    `sources`, on the response and on the final chunk."""
    _params(services, body, None)  # the same refusals (n, logprobs, stop) as for a plain model
    try:
        await run_in_threadpool(services.kb.get, kb_name)
    except KBNotFound as e:
        raise UnknownModelError(f"The model '{body.model}' does not exist: no knowledge base named "
                                f"'{kb_name}'") from e
    question = body.kb_request(kb_name)
    sources: list[dict[str, Any]] = []
    reply = Reply(kb_model_id(kb_name), extra={"sources": sources})
    return await _respond(_kb_deltas(services, question, sources, whole=not body.stream), request, body, reply)


@router.post("/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request,
                      services: Services = Depends(get_services)) -> Response | dict[str, Any]:
    if isinstance(body.prompt, list):
        if len(body.prompt) != 1:
            raise InvalidRequest("send one prompt per request", param="prompt")
        prompt = body.prompt[0]
    else:
        prompt = body.prompt
    if body.echo or (body.best_of or 1) > 1 or body.suffix:
        raise InvalidRequest("echo, best_of and suffix are not supported", param="echo")
    params = _params(services, body, body.max_tokens)
    model = body.model or services.llm.model_id
    return await _respond(services.llm.complete(prompt, params, model=model), request, body,
                          Reply(model, chat=False))


@router.get("")
def index() -> dict[str, Any]:
    """What a browser opening the API's base URL sees: where the docs and the models are."""
    return {"object": "zhiku.api", "message": "the OpenAI-compatible API of zhiku; point an OpenAI client here",
            "models": "/v1/models", "docs": "/docs", "openapi": "/openapi.json",
            "endpoints": ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models"]}


@router.get("/models")
def list_models(services: Services = Depends(get_services)) -> dict[str, Any]:
    return {"object": "list", "data": [_model_card(m) for m in _all_models(services)]}


@router.get("/models/{model_id:path}")
def get_model(model_id: str, services: Services = Depends(get_services)) -> dict[str, Any]:
    if model_id not in _all_models(services):
        raise NotFound(f"model {model_id!r} is not served here", param="model", code="model_not_found")
    return _model_card(model_id)


def _all_models(services: Services) -> list[str]:
    """The served models and a `kb:<name>` model per knowledge base. With the database unreachable the list
    would be missing its knowledge bases without saying so: DatabaseUnavailable (503, Retry-After) instead."""
    return [*services.llm.model_ids(), *(kb_model_id(kb.name) for kb in services.kb.list())]


def _model_card(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "zhiku"}


@router.post("/embeddings")
async def embeddings(body: EmbeddingRequest, services: Services = Depends(get_services)) -> dict[str, Any]:
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if not texts or len(texts) > 2048:
        raise InvalidRequest("input must hold 1 to 2048 strings", param="input")
    if any(not t for t in texts):
        raise InvalidRequest("input strings must not be empty", param="input")
    kb = services.kb
    vectors = np.asarray(await run_in_threadpool(kb.embed, texts, body.model), dtype=np.float32)
    if body.dimensions is not None and body.dimensions != vectors.shape[1]:
        raise InvalidRequest(f"this embedder has {vectors.shape[1]} dimensions", param="dimensions")
    data = []
    for i, v in enumerate(vectors):
        emb: Any = base64.b64encode(v.astype("<f4").tobytes()).decode() if body.encoding_format == "base64" \
            else v.tolist()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    tokens = sum(max(1, len(t) // 4) for t in texts)  # the embedders do not report token counts
    return {"object": "list", "data": data, "model": body.model or services.settings.embedder,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
