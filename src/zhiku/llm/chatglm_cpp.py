"""chatglm.cpp (`chatglm_cpp.Pipeline`), the optional extra `zhiku[chatglm]`.

The token loop is ours, not the Pipeline's `chat()`: `max_tokens` counts new tokens only, system
messages reach the model's own chat template, the reply ends with finish_reason "length" when the
budget cuts it, stop strings are honoured, and the caller can stop between any two tokens. Model
output is only ever decoded as text; nothing in it is evaluated. `tools` and a JSON `response_format` are
refused with a 400 (this backend has neither a tool template nor a grammar), never silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zhiku.errors import ModelError
from zhiku.llm import tool_choice
from zhiku.llm.base import (
    ChatDelta,
    ContextOverflowError,
    FinishReason,
    GenerationParams,
    InvalidParamsError,
    Usage,
)
from zhiku.llm.text import StopText, message_text

# chatglm.cpp calls the tool role "observation"
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
          "tool": "observation"}
_NO_LIMIT = 1 << 30


class ChatGLMCppModel:
    def __init__(self, path: Path, model_id: str, *, n_ctx: int) -> None:
        try:
            import chatglm_cpp
        except ImportError as e:
            raise ModelError("the chatglm backend needs the extra: "
                             "CMAKE_ARGS=-DCMAKE_POLICY_VERSION_MINIMUM=3.5 pip install 'zhiku[chatglm]'") from e
        self._mod = chatglm_cpp
        try:
            self._pipe = chatglm_cpp.Pipeline(str(path))
        except RuntimeError as e:
            raise ModelError(f"cannot load {path} with chatglm.cpp: {e}") from e
        cfg = self._pipe.model.config
        self.id = model_id
        self.context_length = min(n_ctx, cfg.max_length) if cfg.max_length > 0 else n_ctx
        self._eos = {cfg.eos_token_id, *cfg.extra_eos_token_ids}
        self.supports_tools = False  # the agent then uses its text protocol

    def _messages(self, messages: list[dict[str, Any]]) -> list[Any]:
        return [self._mod.ChatMessage(role=_ROLES.get(m.get("role", ""), "user"),
                                      content=message_text(m.get("content"))) for m in messages]

    def count_tokens(self, text: str) -> int:
        return len(self._pipe.tokenizer.encode(text, _NO_LIMIT))

    def count_chat_tokens(self, messages: list[dict[str, Any]]) -> int:
        return len(self._pipe.tokenizer.apply_chat_template(self._messages(messages), _NO_LIMIT))

    def chat(self, messages: list[dict[str, Any]], params: GenerationParams) -> Iterator[ChatDelta]:
        params = self._plain(params)
        ids = self._pipe.tokenizer.apply_chat_template(self._messages(messages), _NO_LIMIT)
        yield from self._generate(list(ids), params)

    def _plain(self, params: GenerationParams) -> GenerationParams:
        """What this backend cannot honour is refused (400), never silently dropped: tools (tool_choice "none"
        aside) and a JSON response_format, which would need a grammar that chatglm.cpp has not."""
        params = tool_choice.resolve(params, False, self.id, "the chatglm backend does not pass tools to the model")
        if params.response_format and params.response_format.get("type") not in (None, "text"):
            raise InvalidParamsError(f"model {self.id!r} cannot constrain its output to JSON: the chatglm backend "
                                     "has no grammar support; use the llama.cpp backend", "response_format")
        return params

    def complete(self, prompt: str, params: GenerationParams) -> Iterator[ChatDelta]:
        params = self._plain(params)
        yield from self._generate(list(self._pipe.tokenizer.encode(prompt, _NO_LIMIT)), params)

    def _generate(self, ids: list[int], params: GenerationParams) -> Iterator[ChatDelta]:
        n_prompt = len(ids)
        if n_prompt >= self.context_length:
            raise ContextOverflowError(
                f"the prompt is {n_prompt} tokens but the context window is {self.context_length}")
        budget = min(params.max_tokens, self.context_length - n_prompt)
        greedy = params.temperature <= 0.0
        config = self._mod._C.GenerationConfig(
            max_length=self.context_length, max_new_tokens=budget, max_context_length=self.context_length,
            do_sample=not greedy, top_k=0, top_p=params.top_p,
            temperature=params.temperature if not greedy else 1.0, repetition_penalty=1.0)
        model, tokenizer = self._pipe.model, self._pipe.tokenizer
        text = StopText(params.stop)
        out: list[int] = []
        shown = ""  # decoded text of `out` already fed to `text`
        finish: FinishReason = "length"
        n_past = 0
        while len(out) < budget:
            token = model.generate_next_token(ids, None, config, n_past, n_prompt)
            n_past = len(ids)
            ids.append(token)
            if token in self._eos:
                finish = "stop"
                break
            out.append(token)
            piece = ""
            try:
                decoded = tokenizer.decode(out)
            except UnicodeDecodeError:
                decoded = shown  # a multi-byte character is still incomplete
            # sentencepiece decoding of a longer sequence can re-space earlier text: only feed growth
            if decoded.startswith(shown) and not decoded.endswith("\ufffd"):
                piece = text.feed(decoded[len(shown):])
                shown = decoded
            yield ChatDelta(text=piece)
            if text.stopped:
                finish = "stop"
                break
        yield ChatDelta(text=text.flush(), finish_reason=finish, usage=Usage(n_prompt, len(out)))

    def close(self) -> None:
        self._pipe = None
