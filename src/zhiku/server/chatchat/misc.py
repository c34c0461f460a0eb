"""Chatchat 0.2's /llm_model, /server and /other routes, answered truthfully for zhiku's one served model.

zhiku runs its model in process: it cannot stop it or switch to another while serving, and says so
(code 500 with the reason) instead of pretending; switching means restarting with `--model NAME`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from zhiku import packs
from zhiku.chat.errors import ChatError
from zhiku.embed.registry import SIMPLE, get_embedder
from zhiku.llm.base import GenerationParams
from zhiku.server.chatchat.service import SEARCH_ENGINES, distance
from zhiku.server.chatchat.wire import STREAM_HEADERS, envelope
from zhiku.server.deps import get_services
from zhiku.services import Services

router = APIRouter(tags=["Langchain-Chatchat 0.2"])
ServicesDep = Annotated[Services, Depends(get_services)]
# Chatchat's prompt types and the zhiku chat modes whose templates stand for them.
PROMPT_MODES = {"llm_chat": "llm", "knowledge_base_chat": "kb", "search_engine_chat": "search", "agent_chat": "agent"}


def model_config(services: Services) -> dict[str, Any]:
    s = services.settings
    return {"model_name": services.llm.model_id, "model": s.model, "llm_backend": s.llm_backend,
            "context_length": s.ctx, "parallel": s.parallel, "device": "cpu", "online_api": s.llm_backend == "openai"}


class ModelBody(BaseModel):
    model_name: str = Field("", max_length=1000)
    new_model_name: str = Field("", max_length=1000)
    controller_address: str | None = None
    placeholder: str | None = None


@router.post("/llm_model/list_running_models")
def list_running_models(services: ServicesDep) -> JSONResponse:
    return envelope(data={services.llm.model_id: model_config(services)})


@router.post("/llm_model/list_config_models")
def list_config_models(services: ServicesDep) -> JSONResponse:
    """Chatchat's shape: local models {name: path}, online APIs, and the names a worker can serve."""
    models_dir = services.settings.models_path
    local = {name: str(packs.pack_path(models_dir, name)) for name in packs.PACKS if packs.installed(models_dir, name)}
    return envelope(data={"local": local, "online": {}, "worker": [services.llm.model_id]})


@router.post("/llm_model/get_model_config")
def get_model_config(services: ServicesDep, body: ModelBody) -> JSONResponse:
    served = body.model_name in ("", services.llm.model_id)
    return envelope(data=model_config(services) if served else {})


@router.post("/llm_model/stop")
def stop_llm_model(services: ServicesDep, body: ModelBody) -> JSONResponse:
    return envelope(500, f"zhiku runs its model ({services.llm.model_id}) inside the server process and cannot stop "
                         "it on its own; stop the server instead")


@router.post("/llm_model/change")
def change_llm_model(services: ServicesDep, body: ModelBody) -> JSONResponse:
    served = services.llm.model_id
    if body.new_model_name == served:
        return envelope(msg=f"{served} is already the served model")
    return envelope(500, f"zhiku serves one model ({served}) and cannot switch models while running; restart it "
                         f"with `zhiku serve --model {body.new_model_name or 'NAME'}` (installed packs: "
                         f"{', '.join(n for n in packs.PACKS if packs.installed(services.settings.models_path, n))})")


def _templates(services: Services) -> dict[str, dict[str, str]]:
    prompts = services.chat.prompts
    found = prompts.names()
    return {kind: {name: template_text(services, kind, name) for name in found.get(mode, [])}
            for kind, mode in PROMPT_MODES.items()}


def template_text(services: Services, kind: str, name: str) -> str:
    """A zhiku template as Chatchat shows one: one text with {{ context }} and {{ question }} placeholders."""
    t = services.chat.prompts.get(PROMPT_MODES[kind], name, "zh")
    return f"{t.system.strip()}\n\n{t.user}" if t.system.strip() else t.user


@router.post("/server/configs")
def server_configs(services: ServicesDep) -> dict[str, Any]:
    """Chatchat's configuration names with zhiku's values (a bare object, as Chatchat answers)."""
    s = services.settings
    kbs = [k.name for k in services.kb.list()]
    return {"DEFAULT_KNOWLEDGE_BASE": kbs[0] if kbs else "samples", "DEFAULT_SEARCH_ENGINE": s.search_engine,
            "DEFAULT_VS_TYPE": "zhiku", "EMBEDDING_MODEL": s.embedder, "CHUNK_SIZE": s.chunk_size,
            "OVERLAP_SIZE": s.chunk_overlap, "ZH_TITLE_ENHANCE": s.title_enhance, "TEXT_SPLITTER_NAME": "zhiku",
            "SCORE_THRESHOLD": distance(s.score_threshold), "VECTOR_SEARCH_TOP_K": s.top_k,
            "SEARCH_ENGINE_TOP_K": s.top_k, "LLM_MODELS": [services.llm.model_id], "HISTORY_LEN": s.history_turns,
            "TEMPERATURE": s.temperature, "MAX_TOKENS": s.default_max_tokens, "PROMPT_TEMPLATES": _templates(services)}


@router.post("/server/list_search_engines")
def list_search_engines() -> JSONResponse:
    return envelope(data=list(SEARCH_ENGINES))


@router.post("/server/get_prompt_template")
def get_prompt_template(services: ServicesDep,
                        type: Annotated[Literal["llm_chat", "knowledge_base_chat", "search_engine_chat", "agent_chat"],
                                        Body()] = "llm_chat",
                        name: Annotated[str, Body(max_length=200)] = "default") -> Any:
    """The template text as a bare JSON string, as Chatchat answers."""
    try:
        return template_text(services, type, name)
    except ChatError as e:
        return envelope(404, str(e))


class EmbedBody(BaseModel):
    texts: list[str] = Field(max_length=10_000)
    embed_model: str | None = None
    to_query: bool = False


@router.post("/other/embed_texts")
def embed_texts(services: ServicesDep, body: EmbedBody) -> JSONResponse:
    """zhiku's configured embedder (or e5-small / use-m3 when named); Chatchat's model names are not here."""
    emb = get_embedder(body.embed_model if body.embed_model in SIMPLE else services.settings.embedder,
                       services.settings)
    if not body.texts:
        return envelope(data=[])
    vectors = emb.embed_queries(body.texts) if body.to_query else emb.embed_passages(body.texts)
    return envelope(data=vectors.tolist())


class CompletionBody(BaseModel):
    query: str = Field(max_length=100_000)
    stream: bool = False
    echo: bool = False
    model_name: str | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_tokens: int | None = 1024
    prompt_name: str = "default"


@router.post("/other/completion")
async def completion(services: ServicesDep, body: CompletionBody) -> StreamingResponse:
    """Raw text completion of `query` (with it in front when `echo`), as raw text pieces."""
    s = services.settings
    budget = body.max_tokens if body.max_tokens and body.max_tokens > 0 else s.default_max_tokens  # as /chat/chat
    params = GenerationParams(max_tokens=min(budget, s.max_tokens_cap),
                              temperature=s.temperature if body.temperature is None else body.temperature)
    pieces = await primed(text_of(services.llm.complete(body.query, params)))
    if body.echo:
        pieces = prepend(body.query, pieces)
    return StreamingResponse(pieces if body.stream else joined(pieces), media_type="text/event-stream",
                             headers=STREAM_HEADERS)


async def text_of(deltas: AsyncIterator[Any]) -> AsyncIterator[str]:
    async for d in deltas:
        if d.text:
            yield d.text


async def primed(pieces: AsyncIterator[str]) -> AsyncIterator[str]:
    """Wait for the first piece before the reply starts, so a refusal (busy, bad request) is still an
    envelope with its status rather than a broken stream."""
    try:
        first = await anext(pieces)
    except StopAsyncIteration:
        first = ""

    async def rest() -> AsyncIterator[str]:
        if first:
            yield first
        async for piece in pieces:
            yield piece

    return rest()


async def prepend(head: str, pieces: AsyncIterator[str]) -> AsyncIterator[str]:
    yield head
    async for piece in pieces:
        yield piece


async def joined(pieces: AsyncIterator[str]) -> AsyncIterator[str]:
    yield "".join([p async for p in pieces])
