"""Any OpenAI-compatible upstream (Ollama, vLLM, llama-server, chatglm.cpp's openai_api.py, a hosted API).

This is how a user moves the LLM off their machine: zhiku keeps serving /v1 and its own app, and the
tokens come from the upstream's streaming endpoint through the official `openai` client. Upstream
errors become the same typed errors the local backends raise, so /v1 answers them alike.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any

import openai

from zhiku.errors import ModelError
from zhiku.llm.base import (
    ChatDelta,
    FinishReason,
    GenerationParams,
    InvalidParamsError,
    QueueFullError,
    UnknownModelError,
    Usage,
)
from zhiku.llm.text import estimate_tokens, message_text

_FINISH: dict[str | None, FinishReason] = {"stop": "stop", "length": "length", "tool_calls": "tool_calls",
                                           "function_call": "tool_calls", "content_filter": "stop"}


class OpenAICompatModel:
    def __init__(self, base_url: str, model_id: str, *, api_key: str = "", timeout: float = 120.0,
                 context_length: int = 4096) -> None:
        if not base_url:
            raise ModelError("llm_backend=openai needs upstream_base_url, e.g. http://127.0.0.1:11434/v1")
        self.id = model_id
        self.context_length = context_length
        # No retries: the caller is waiting on a stream, and a busy upstream should surface as 503 here.
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=timeout,
                                     max_retries=0)

    def upstream_models(self) -> list[str]:
        try:
            return [m.id for m in self._client.models.list()]
        except openai.OpenAIError as e:
            raise ModelError(f"upstream {self._client.base_url} is not answering: {e}") from e

    # The tokenizer lives upstream, so counts made here are estimates; usage reported by the
    # upstream is passed through as is.
    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def count_chat_tokens(self, messages: list[dict[str, Any]]) -> int:
        return sum(4 + estimate_tokens(message_text(m.get("content"))) for m in messages) + 2

    def chat(self, messages: list[dict[str, Any]], params: GenerationParams) -> Iterator[ChatDelta]:
        kwargs: dict[str, Any] = self._common(params)
        if params.response_format:
            kwargs["response_format"] = params.response_format
        if params.tools:
            kwargs["tools"] = params.tools
            if params.tool_choice is not None:
                kwargs["tool_choice"] = params.tool_choice
        stream = self._call(self._client.chat.completions.create, messages=messages, **kwargs)
        calls: dict[int, dict[str, Any]] = {}

        def gather(choice: Any) -> None:
            for tc in choice.delta.tool_calls or []:
                # streamed tool calls arrive in fragments keyed by index; assemble them whole
                call = calls.setdefault(tc.index, {"id": "", "type": "function",
                                                   "function": {"name": "", "arguments": ""}})
                call["id"] = tc.id or call["id"]
                if tc.function is not None:
                    call["function"]["name"] += tc.function.name or ""
                    call["function"]["arguments"] += tc.function.arguments or ""

        finish, usage = yield from _relay(stream, lambda c: c.delta.content,
                                          lambda: self.count_chat_tokens(messages), gather)
        yield ChatDelta(tool_calls=[calls[i] for i in sorted(calls)] or None, finish_reason=finish, usage=usage)

    def complete(self, prompt: str, params: GenerationParams) -> Iterator[ChatDelta]:
        stream = self._call(self._client.completions.create, prompt=prompt, **self._common(params))
        finish, usage = yield from _relay(stream, lambda c: c.text, lambda: estimate_tokens(prompt))
        yield ChatDelta(finish_reason=finish, usage=usage)

    def _common(self, params: GenerationParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.id, "stream": True, "stream_options": {"include_usage": True},
            "max_tokens": params.max_tokens, "temperature": params.temperature, "top_p": params.top_p,
            "presence_penalty": params.presence_penalty, "frequency_penalty": params.frequency_penalty,
        }
        if params.stop:
            kwargs["stop"] = params.stop
        if params.seed is not None:
            kwargs["seed"] = params.seed
        return kwargs

    def _call(self, fn: Any, **kwargs: Any) -> Any:
        """Start the upstream stream, translating its refusals into our typed errors."""
        try:
            return fn(**kwargs)
        except openai.NotFoundError as e:
            raise UnknownModelError(f"the upstream does not serve model {self.id!r}: {_msg(e)}") from e
        except (openai.BadRequestError, openai.UnprocessableEntityError) as e:
            raise InvalidParamsError(f"the upstream refused the request: {_msg(e)}") from e
        except openai.RateLimitError as e:
            raise QueueFullError(_retry_after(e)) from e
        except openai.APIStatusError as e:
            if e.status_code == 503:
                raise QueueFullError(_retry_after(e)) from e
            raise ModelError(f"upstream error {e.status_code}: {_msg(e)}") from e
        except openai.APIConnectionError as e:
            raise ModelError(f"cannot reach the upstream at {self._client.base_url}: {e}") from e

    def close(self) -> None:
        self._client.close()


def _msg(e: openai.APIStatusError) -> str:
    body = e.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return e.message


def _retry_after(e: openai.APIStatusError) -> int:
    try:
        return max(1, int(float(e.response.headers.get("retry-after", "1"))))
    except ValueError:
        return 1


def _relay(stream: Any, text_of: Callable[[Any], str | None], prompt_tokens: Callable[[], int],
           on_choice: Callable[[Any], None] = lambda c: None) -> Generator[ChatDelta, None, tuple[FinishReason, Usage]]:
    """Yield an upstream stream's text (chat and completions alike); return its finish reason and its usage,
    estimated here when the upstream sends none."""
    finish: FinishReason = "stop"
    usage: Usage | None = None
    produced: list[str] = []
    with stream:
        for chunk in stream:
            if chunk.usage is not None:
                usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
            for choice in chunk.choices[:1]:
                if choice.finish_reason:
                    finish = _FINISH.get(choice.finish_reason, "stop")
                on_choice(choice)
                if text := text_of(choice):
                    produced.append(text)
                    yield ChatDelta(text=text)
    return finish, usage or Usage(prompt_tokens(), estimate_tokens("".join(produced)))
