"""The OpenAI wire format, in one place: request bodies, response objects and chunks, SSE frames, error
frames, and the `kb:<name>` model ids through which knowledge bases answer as models.

The routes in openai_api.py only call services and hand the results to the builders here, for plain and
`kb:` models alike; error bodies come from server/errors.py, which every route shares.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from zhiku import __version__
from zhiku.chat.types import ChatRequest, HistoryMessage
from zhiku.config import ScoreThreshold, TopK
from zhiku.errors import InvalidRequest, ZhikuError
from zhiku.llm.base import ChatDelta, FinishReason, Usage
from zhiku.server.errors import error_body

FINGERPRINT = f"zhiku-{__version__}"
KB_PREFIX = "kb:"
SSE_DONE = "data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def kb_model_id(kb_name: str) -> str:
    return KB_PREFIX + kb_name


def kb_name_of(model: str | None) -> str | None:
    """The knowledge base a `kb:<name>` model id names, or None for an ordinary model."""
    return model[len(KB_PREFIX):] if model and model.startswith(KB_PREFIX) else None


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

    @field_validator("content")
    @classmethod
    def _text_parts_only(cls, content: Any) -> Any:
        """Parts other than text (images, audio, files) are refused, not silently dropped: the models
        served here read text only."""
        for part in content if isinstance(content, list) else []:
            kind = part.get("type")
            if kind != "text":
                raise ValueError(f"content part of type {kind!r} is not supported: the models served here "
                                 "read text only (send {\"type\": \"text\", \"text\": ...} parts)")
        return content

    def text(self) -> str:
        """The content as text: a string, or the text parts of a list of parts."""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(p.get("text", "")) for p in self.content or [] if p.get("type") == "text")


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")  # llama-cpp-python's json_object extension


# Flags are JSON booleans, as OpenAI requires: "stream": "yes" or 1 is a 400, not a guess.
class StreamOptions(_Body):
    include_usage: StrictBool = False


class Sampling(_Body):
    model: str | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1)
    logprobs: Any = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    # extensions read only for `kb:<name>` models: knowledge-base QA options
    top_k: TopK | None = None
    score_threshold: ScoreThreshold | None = None
    prompt_name: str | None = None
    language: Literal["auto", "zh", "en"] | None = None
    history_turns: int | None = Field(None, ge=0, le=50)

    def kb_request(self, kb_name: str) -> ChatRequest:
        """The knowledge-base question: the last user message; earlier user/assistant turns are history."""
        turns = [m for m in self.messages if m.role in ("user", "assistant")]
        if not turns or turns[-1].role != "user":
            raise InvalidRequest("the last message must be from the user", param="messages")
        history = [HistoryMessage.model_validate({"role": m.role, "content": m.text()}) for m in turns[:-1]]
        try:
            return ChatRequest(
                query=turns[-1].text(), mode="kb", kb=kb_name, history=history, save=False,
                history_turns=min(50, len(history) // 2) if self.history_turns is None else self.history_turns,
                temperature=self.temperature, max_tokens=self.max_completion_tokens or self.max_tokens,
                top_k=self.top_k, score_threshold=self.score_threshold, prompt_name=self.prompt_name,
                language=self.language)
        except ValidationError as e:  # e.g. an empty or over-long question
            first = e.errors()[0]
            raise InvalidRequest(f"the last user message: {first.get('msg')}", param="messages") from e


class CompletionRequest(Sampling):
    prompt: str | list[str]
    echo: StrictBool = False
    best_of: int | None = Field(None, ge=1)
    suffix: str | None = None


class EmbeddingRequest(_Body):
    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


# -- responses -----------------------------------------------------------------------------------

def usage_object(u: Usage | None) -> dict[str, int]:
    u = u or Usage()
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens}


@dataclass
class Reply:
    """The objects of one response: a chat completion (`chat=True`) or a text completion, whole or as
    chunks. `extra` fields (a `kb:` model's `sources`) go on the whole object and on the final chunk."""

    model: str
    chat: bool = True
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.id = self.id or ("chatcmpl-" if self.chat else "cmpl-") + uuid.uuid4().hex

    def _base(self, chunk: bool) -> dict[str, Any]:
        obj = "chat.completion" if self.chat else "text_completion"
        return {"id": self.id, "object": obj + (".chunk" if chunk and self.chat else ""), "created": self.created,
                "model": self.model, "system_fingerprint": FINGERPRINT}

    def head(self) -> list[dict[str, Any]]:
        """The chunks sent before any delta: a chat stream announces the assistant role."""
        if not self.chat:
            return []
        return [{**self._base(True), "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                  "logprobs": None, "finish_reason": None}]}]

    def chunk(self, d: ChatDelta) -> dict[str, Any]:
        if self.chat:
            delta: dict[str, Any] = {}
            if d.text:
                delta["content"] = d.text
            if d.tool_calls:
                delta["tool_calls"] = [{"index": i, **c} for i, c in enumerate(d.tool_calls)]
            choice: dict[str, Any] = {"index": 0, "delta": delta}
        else:
            choice = {"index": 0, "text": d.text}
        obj = {**self._base(True), "choices": [{**choice, "logprobs": None, "finish_reason": d.finish_reason}]}
        return {**obj, **self.extra} if d.finish_reason else obj

    def usage_chunk(self, u: Usage | None) -> dict[str, Any]:
        return {**self._base(True), "choices": [], "usage": usage_object(u)}

    def whole(self, text: str, calls: list[dict[str, Any]], finish: FinishReason, u: Usage) -> dict[str, Any]:
        if self.chat:
            message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
            if calls:
                message["tool_calls"] = calls
            choice: dict[str, Any] = {"index": 0, "message": message}
        else:
            choice = {"index": 0, "text": text}
        return {**self._base(False), "choices": [{**choice, "logprobs": None, "finish_reason": finish}],
                "usage": usage_object(u), **self.extra}


# -- server-sent events --------------------------------------------------------------------------

def sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False, separators=(',', ':'))}\n\n"


def error_frame(err: ZhikuError) -> str:
    """An error after the stream has started: the status line is sent, so it travels as an event."""
    return sse(error_body(err))


def stream_response(frames: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(frames, media_type="text/event-stream", headers=SSE_HEADERS)
