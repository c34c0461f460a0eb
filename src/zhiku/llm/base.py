"""The ChatModel protocol: messages in, a stream of deltas out, with usage and finish reason.

Backends are synchronous generators (llama.cpp and chatglm.cpp are blocking C calls); the scheduler
runs them on worker threads and bridges them to asyncio, so nothing here touches the event loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from zhiku.errors import ErrorKind, ModelError, ZhikuError

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class GenerationParams:
    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    # OpenAI's response_format object: {"type": "json_object"} or {"type": "json_schema", "json_schema": {...}}
    response_format: dict[str, Any] | None = None
    # OpenAI-style tool definitions; backends without native tool calling ignore them
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    # texts whose log-probability as the first token the backend reports in the last delta (`logprobs`);
    # used by the answer check (chat/answer_check.py) to read a yes/no verdict as a probability
    logprobs_of: tuple[str, ...] = ()


@dataclass
class ChatDelta:
    """One step of a stream. The last delta carries finish_reason and usage."""

    text: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    logprobs: dict[str, float] | None = None  # first-token log-probabilities of params.logprobs_of


@runtime_checkable
class ChatModel(Protocol):
    id: str
    context_length: int

    def chat(self, messages: list[dict[str, Any]], params: GenerationParams) -> Iterator[ChatDelta]:
        """Stream a chat completion. Messages are OpenAI-shaped dicts (role, content, ...)."""
        ...

    def complete(self, prompt: str, params: GenerationParams) -> Iterator[ChatDelta]:
        """Stream a raw text completion."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def count_chat_tokens(self, messages: list[dict[str, Any]]) -> int:
        """Tokens of the templated prompt these messages become (an estimate for remote backends)."""
        ...

    def close(self) -> None: ...


class UnknownModelError(ModelError):
    """The request named a model this server does not serve."""

    kind: ErrorKind = "not_found"
    code = "model_not_found"

    def __init__(self, message: str) -> None:
        super().__init__(message, param="model")


class QueueFullError(ZhikuError):
    """Every slot is busy and the wait queue is full (answered with Retry-After)."""

    kind: ErrorKind = "busy"
    code = "server_busy"

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__("server busy: all generation slots and the queue are full, retry shortly",
                         retry_after=retry_after)


class ContextOverflowError(ZhikuError, ValueError):
    """The prompt (plus max_tokens) does not fit the model's context window."""

    kind: ErrorKind = "invalid_request"
    code = "context_length_exceeded"

    def __init__(self, message: str) -> None:
        super().__init__(message, param="messages")


class InvalidParamsError(ZhikuError, ValueError):
    """A generation parameter the backend cannot honour, e.g. a JSON schema it cannot compile."""

    kind: ErrorKind = "invalid_request"
    code = "invalid_request"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message, param=param)
