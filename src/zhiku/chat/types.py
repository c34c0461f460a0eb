"""Request, event and result types shared by the chat service, the HTTP routes, the web UI and the CLI."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, StrictBool

from zhiku.chat.sources import Source
from zhiku.config import ScoreThreshold, TopK
from zhiku.errors import ErrorKind, ZhikuError

T = TypeVar("T")
Mode = Literal["llm", "kb", "file", "search", "agent"]
MODES: tuple[str, ...] = ("llm", "kb", "file", "search", "agent")
EventType = Literal["delta", "sources", "tool_call", "tool_result", "done", "error"]
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class HistoryMessage(BaseModel):
    role: Literal["user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    """One question in any mode. Unset fields fall back to the settings."""

    query: str = Field(min_length=1, max_length=20_000)
    mode: Mode = "llm"
    conversation_id: str | None = Field(default=None, pattern=ID_PATTERN,
                                        description="continue (or start, if unknown) this conversation")
    history: list[HistoryMessage] | None = Field(
        default=None, description="earlier turns, used when no stored conversation is given")
    history_turns: int | None = Field(default=None, ge=0, le=50, description="how many earlier turns to send")
    # JSON booleans only: "stream": "no" must not be read as a guess.
    save: StrictBool = Field(default=True, description="store the question and answer in a conversation")
    stream: StrictBool = True
    # generation
    model: str | None = None
    prompt_name: str | None = Field(default=None, description="template name in prompts.toml (default: 'default')")
    language: Literal["auto", "zh", "en"] | None = Field(default=None, description="template language")
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1)
    # knowledge-base QA (and the agent's knowledge-base tool)
    kb: str | None = Field(default=None, description="knowledge base name")
    top_k: TopK | None = None
    score_threshold: ScoreThreshold | None = None
    retrieval: Literal["hybrid", "bm25", "dense"] = "hybrid"
    no_hit: Literal["reply", "llm"] = Field(
        default="reply", description="nothing above the threshold: the fixed no-answer reply without the model, or "
                                     "the model answering alone (Langchain-Chatchat's behaviour)")
    # search-engine QA
    search_engine: Literal["searxng", "duckduckgo"] | None = None
    # agent
    tools: list[str] | None = Field(default=None, description="tool names to offer (default: all)")
    max_steps: int | None = Field(default=None, ge=1, le=50)
    agent_protocol: Literal["auto", "native", "json", "react"] = "auto"


@dataclass
class ChatEvent:
    """One event of an answer stream; on the wire it is `data: {"type": ..., **data}`."""

    type: EventType
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"type": self.type, **self.data}, ensure_ascii=False)

    def to_sse(self) -> str:
        return f"data: {self.to_json()}\n\n"

    @classmethod
    def from_json(cls, raw: str | dict[str, Any]) -> ChatEvent:
        obj = json.loads(raw) if isinstance(raw, str) else dict(raw)
        kind = obj.pop("type")
        return cls(kind, obj)

    @property
    def error_kind(self) -> ErrorKind | None:
        """For an `error` event, what went wrong (zhiku.errors); None for other events."""
        return self.exception().kind if self.type == "error" else None

    def exception(self) -> ZhikuError:
        """The error an `error` event reports, with its kind, code, param and retry_after."""
        assert self.type == "error", self.type
        return ZhikuError.from_dict(self.data)


SSE_DONE = "data: [DONE]\n\n"


def delta(text: str) -> ChatEvent:
    return ChatEvent("delta", {"text": text})


def sources_event(sources: Iterable[Source]) -> ChatEvent:
    return ChatEvent("sources", {"sources": [s.to_dict() for s in sources]})


def error(exc: ZhikuError) -> ChatEvent:
    """The event that ends a failed answer: {message, kind, code} (+ param, retry_after when set)."""
    return ChatEvent("error", exc.to_dict())


@asynccontextmanager
async def closing(stream: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Like contextlib.aclosing for any async iterator: closing an async generator early runs its
    cleanup now (for an LLM stream: stop generating and free the slot), not whenever it is collected."""
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


class ChatResult(BaseModel):
    """A whole answer, reassembled from its events (the non-streaming response)."""

    answer: str = ""
    sources: list[dict[str, Any]] = Field(default_factory=list)
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    conversation_id: str | None = None
    message_id: str | None = None
    usage: dict[str, Any] = Field(default_factory=dict)
    timings: dict[str, Any] = Field(default_factory=dict)
    finish_reason: str | None = None
    error: str | None = None
    error_code: str | None = None

    def add(self, event: ChatEvent) -> None:
        d = event.data
        if event.type == "delta":  # a correction carries the whole answer from then on (chat/answer_stream.py)
            self.answer = d["replace"] if "replace" in d else self.answer + d.get("text", "")
        elif event.type == "sources":
            self.sources = list(d.get("sources", []))
        elif event.type == "tool_call":
            self.tool_calls.append({**d, "result": None})
        elif event.type == "tool_result":
            for call in reversed(self.tool_calls):
                if call.get("id") == d.get("id"):
                    call["result"] = d.get("result")
                    call["ok"] = d.get("ok", True)
                    break
        elif event.type == "done":
            self.conversation_id = d.get("conversation_id")
            self.message_id = d.get("message_id")
            self.usage = d.get("usage") or {}
            self.timings = d.get("timings") or {}
            self.finish_reason = d.get("finish_reason")
        elif event.type == "error":
            self.error = d.get("message", "error")
            self.error_code = d.get("code")

    @classmethod
    def from_events(cls, events: Iterable[ChatEvent]) -> ChatResult:
        result = cls()
        for event in events:
            result.add(event)
        return result


class FeedbackRequest(BaseModel):
    message_id: str = Field(pattern=ID_PATTERN)
    score: Literal[1, -1] = Field(description="1 = thumbs up, -1 = thumbs down")
    reason: str = Field(default="", max_length=2000)


class RenameRequest(BaseModel):
    title: str = Field(min_length=1, max_length=200)
