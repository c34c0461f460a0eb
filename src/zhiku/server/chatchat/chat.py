"""Chatchat 0.2's /chat routes over ChatService: the same answers as /api/chat, in Chatchat's objects.

- chat: {"text", "chat_history_id"} per piece (or one object); the id is the zhiku conversation that holds
  the answer, so /chat/feedback finds it.
- knowledge_base_chat, search_engine_chat: {"answer"} per piece, then {"docs"} (Markdown strings that cite
  and link each source). As in Chatchat, a question with no hit above the threshold is answered by the LLM
  without context, under a red notice (zhiku's own /api keeps its no-answer reply).
- agent_chat: {"answer"} for the agent's thoughts, {"tools"} per tool run, {"final_answer"} per piece.
- fastchat: the OpenAI-style body, answered as raw text pieces.
An error inside a stream is one {"code", "msg"} object, which Chatchat's client shows as an error.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, field_validator

from zhiku.chat.sources import KBSource, Source, WebSource
from zhiku.chat.types import ChatEvent, ChatRequest, HistoryMessage, closing
from zhiku.config import TopK
from zhiku.llm.base import GenerationParams
from zhiku.server.chatchat import service
from zhiku.server.chatchat.misc import joined, primed, text_of
from zhiku.server.chatchat.wire import STREAM_HEADERS, envelope, json_stream
from zhiku.server.deps import get_services
from zhiku.services import Services

router = APIRouter(prefix="/chat", tags=["Langchain-Chatchat 0.2"])
ServicesDep = Annotated[Services, Depends(get_services)]
ROLES = {"user": "user", "human": "user", "assistant": "assistant", "ai": "assistant"}


class ChatBody(BaseModel):
    """The fields every Chatchat chat route shares, with Chatchat's defaults (None: zhiku's settings)."""

    query: str = Field(min_length=1, max_length=20_000)
    history: list[Any] = Field(default_factory=list, description="[{role, content}] or [role, content] pairs")
    stream: bool = False
    model_name: str | None = Field(None, description="accepted; zhiku answers with its one served model")
    temperature: float | None = Field(None, ge=0.0, le=1.0)
    max_tokens: int | None = None
    prompt_name: str = Field("default", max_length=200)

    @field_validator("history")
    @classmethod
    def _history(cls, items: list[Any]) -> list[Any]:
        out = []
        for h in items:
            role, content = (h[0], h[1]) if isinstance(h, list | tuple) and len(h) >= 2 else \
                (h.get("role"), h.get("content")) if isinstance(h, dict) else (None, None)
            if not isinstance(role, str) or role not in ROLES or not isinstance(content, str):
                raise ValueError("each history item is {\"role\": \"user\"|\"assistant\", \"content\": str} "
                                 "or a [role, content] pair")
            out.append(HistoryMessage(role=ROLES[role], content=content))  # type: ignore[arg-type]
        return out

    def request(self, mode: Literal["llm", "kb", "search", "agent"], **extra: Any) -> ChatRequest:
        """A zhiku request answered in a conversation of its own: its id is Chatchat's chat_history_id."""
        return ChatRequest(query=self.query, mode=mode, conversation_id=uuid.uuid4().hex, history=self.history,
                           history_turns=min(50, len(self.history) // 2), stream=self.stream,
                           prompt_name=self.prompt_name, temperature=self.temperature,
                           max_tokens=self.max_tokens if self.max_tokens and self.max_tokens > 0 else None, **extra)


class KBChatBody(ChatBody):
    knowledge_base_name: str = Field(max_length=200)
    top_k: TopK | None = None
    score_threshold: float | None = Field(None, ge=0.0, le=2.0, description="a distance: 1 or more keeps all")


class SearchChatBody(ChatBody):
    search_engine_name: str = Field(max_length=100)
    top_k: TopK | None = None
    split_result: bool = False


async def _events(services: Services, request: ChatRequest) -> AsyncIterator[ChatEvent]:
    async with closing(services.chat.stream(request)) as events:
        async for event in events:
            yield event


@router.post("/chat")
async def chat(services: ServicesDep, body: ChatBody) -> StreamingResponse:
    request = body.request("llm")
    assert request.conversation_id is not None
    return json_stream(service.llm_objects(_events(services, request), request.conversation_id, body.stream))


@router.post("/knowledge_base_chat", response_model=None)
async def knowledge_base_chat(services: ServicesDep, body: KBChatBody, http: Request
                              ) -> StreamingResponse | JSONResponse:
    name = body.knowledge_base_name
    if (problem := service.problem(services.kb, name)) is not None:
        return envelope(*problem)
    # As in Chatchat, a question with no hit is answered by the LLM alone (under the NO_HIT notice).
    request = body.request("kb", kb=name, top_k=body.top_k,
                           score_threshold=service.relevance_threshold(body.score_threshold), no_hit="llm")
    base = str(http.base_url)

    async def docs_of(sources: list[Source]) -> list[str]:
        return [service.cited(s, f"{base}knowledge_base/download_doc?" + urlencode(
                    {"knowledge_base_name": s.kb, "file_name": s.document}))
                for s in sources if isinstance(s, KBSource)]

    return json_stream(service.qa_objects(_events(services, request), body.stream, docs_of, [service.NO_HIT]))


@router.post("/search_engine_chat", response_model=None)
async def search_engine_chat(services: ServicesDep, body: SearchChatBody) -> StreamingResponse | JSONResponse:
    if (problem := service.search_engine_problem(body.search_engine_name)) is not None:
        return envelope(*problem)
    request = body.request("search", search_engine=body.search_engine_name, top_k=body.top_k)

    async def docs_of(sources: list[Source]) -> list[str]:
        return [service.cited(s, s.url) for s in sources if isinstance(s, WebSource)]

    return json_stream(service.qa_objects(_events(services, request), body.stream, docs_of, []))


@router.post("/agent_chat")
async def agent_chat(services: ServicesDep, body: ChatBody) -> StreamingResponse:
    return json_stream(service.agent_objects(_events(services, body.request("agent")), body.stream))


class FeedbackBody(BaseModel):
    chat_history_id: str = Field("", max_length=64)
    score: int = Field(0, ge=0, le=100, description="0-100; 50 or more counts as a thumbs up")
    reason: str = Field("", max_length=2000)


@router.post("/feedback")
def feedback(services: ServicesDep, body: FeedbackBody) -> JSONResponse:
    """Chatchat's 0-100 score on zhiku's thumbs: 50 or more is up (1), below is down (-1)."""
    try:
        messages = services.chat.get_conversation(body.chat_history_id)["messages"]
        answer = next(m for m in reversed(messages) if m["role"] == "assistant")
        services.chat.add_feedback(answer["id"], 1 if body.score >= 50 else -1, body.reason)
    except StopIteration:
        return envelope(500, f"反馈聊天记录出错： chat {body.chat_history_id} has no complete answer")
    except Exception as e:  # noqa: BLE001 - Chatchat reports any failure here as code 500
        return envelope(500, f"反馈聊天记录出错： {e}")
    return envelope(msg=f"已反馈聊天记录 {body.chat_history_id}")


class FastchatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class FastchatBody(BaseModel):
    """OpenAI's chat body as Chatchat's /chat/fastchat takes it."""

    model: str | None = None
    messages: list[FastchatMessage] = Field(min_length=1)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    n: int = Field(1, ge=1, le=1)
    max_tokens: int | None = Field(None, ge=1)
    stop: list[str] | str | None = None
    stream: bool = False
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


@router.post("/fastchat")
async def fastchat(services: ServicesDep, body: FastchatBody) -> StreamingResponse:
    s = services.settings
    messages = [m.model_dump() for m in body.messages]
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    params = GenerationParams(max_tokens=min(body.max_tokens or s.default_max_tokens, s.max_tokens_cap),
                              temperature=body.temperature, stop=stop, presence_penalty=body.presence_penalty,
                              frequency_penalty=body.frequency_penalty)
    pieces = await primed(text_of(services.llm.chat(messages, params)))
    return StreamingResponse(pieces if body.stream else joined(pieces), media_type="text/event-stream",
                             headers=STREAM_HEADERS)
