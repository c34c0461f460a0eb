"""Embedded llama.cpp through llama-cpp-python: one LlamaCppModel is one generation slot (one context).

Several slots over the same GGUF file each open it with mmap, so the weights sit in memory once (in the
page cache) and only the KV caches are per slot. The prompt comes from the chat template stored in the
GGUF metadata, rendered by llama-cpp-python's own Jinja2ChatFormatter. Decoding is a plain loop over
`Llama.generate` rather than `create_completion`, so that usage is exact (every sampled token is
counted once), the caller can stop between any two tokens, and stop strings never leak into the text.
"""

from __future__ import annotations

import atexit
import json
import random
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from zhiku.llm.base import (
    ChatDelta,
    ContextOverflowError,
    FinishReason,
    GenerationParams,
    InvalidParamsError,
    ModelError,
    Usage,
)
from zhiku.llm.native import patch_llama_defaults
from zhiku.llm.text import StopText
from zhiku.llm.tools import parse_tool_calls, template_messages

_open: weakref.WeakSet[Any] = weakref.WeakSet()
patch_llama_defaults()  # before any model loads: AMX faults on some CPUs (llm/native.py)


def closed_at_exit(llm: Any) -> Any:
    """Close `llm` (a llama_cpp.Llama) at interpreter exit unless it is closed or collected before: left to
    its __del__ during shutdown, it fails ("Exception ignored in Llama.__del__") as llama_cpp's globals go."""
    _open.add(llm)
    return llm


@atexit.register
def _close_open() -> None:
    for llm in list(_open):
        llm.close()


# llama.cpp's own sampling defaults (llama-server uses the same); OpenAI's API has no top_k / min_p.
TOP_K = 40
MIN_P = 0.05


class LlamaCppModel:
    def __init__(self, path: Path, model_id: str, *, n_ctx: int, n_threads: int, n_batch: int = 512,
                 threads_hint: Callable[[], int] | None = None) -> None:
        try:
            import llama_cpp
            from llama_cpp import llama_chat_format
        except ImportError as e:  # pragma: no cover - a core dependency
            raise ModelError("llama-cpp-python is not installed: pip install llama-cpp-python") from e
        self._lib = llama_cpp
        try:
            self._llm = closed_at_exit(llama_cpp.Llama(str(path), n_ctx=n_ctx, n_threads=n_threads,
                                                       n_threads_batch=n_threads, n_batch=n_batch, use_mmap=True,
                                                       verbose=False))
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"cannot load {path}: {e} (is it a valid GGUF model?)") from e
        self.id = model_id
        self.context_length = n_ctx
        self.threads = n_threads
        self._threads_now = n_threads
        # The scheduler may ask for fewer threads while other slots are busy (2 cores, 2 streams).
        self._threads_hint = threads_hint
        llm = self._llm
        template = llm.metadata.get("tokenizer.chat_template") or llama_chat_format.CHATML_CHAT_TEMPLATE
        self.supports_tools = "tools" in template  # the template renders OpenAI `tools` (Qwen2.5, Hermes)
        eos, bos = llm.token_eos(), llm.token_bos()
        self._formatter = llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )
        self._vocab = llm._model.vocab

    # -- prompts and counting ---------------------------------------------------------------------

    def _chat_prompt(self, messages: list[dict[str, Any]], params: GenerationParams | None = None) -> list[int]:
        kwargs: dict[str, Any] = {}
        if params is not None and params.tools:
            kwargs = {"tools": params.tools, "tool_choice": params.tool_choice}
        try:
            result = self._formatter(messages=template_messages(messages), **kwargs)  # type: ignore[arg-type]
        except Exception as e:  # the template's own raise_exception, e.g. roles out of order
            raise InvalidParamsError(f"the model's chat template rejected the messages: {e}", "messages") from e
        return self._llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def count_chat_tokens(self, messages: list[dict[str, Any]]) -> int:
        return len(self._chat_prompt(messages))

    # -- generation -------------------------------------------------------------------------------

    def chat(self, messages: list[dict[str, Any]], params: GenerationParams) -> Iterator[ChatDelta]:
        tokens = self._chat_prompt(messages, params)
        if not params.tools:
            yield from self._generate(tokens, params)
            return
        # With tools the answer may be a tool call: hold the text and split it at the end.
        parts: list[str] = []
        for d in self._generate(tokens, params, special=True):
            parts.append(d.text)
            if d.finish_reason is None:
                yield ChatDelta()  # keeps the caller's cancel check ticking
                continue
            content, calls = parse_tool_calls("".join(parts), _tool_names(params.tools))
            yield ChatDelta(text=content, tool_calls=calls or None,
                            finish_reason="tool_calls" if calls else d.finish_reason, usage=d.usage)

    def complete(self, prompt: str, params: GenerationParams) -> Iterator[ChatDelta]:
        tokens = self._llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
        if not tokens:  # an empty prompt (and no BOS added): llama.cpp cannot sample from nothing
            tokens = [self._llm.token_bos()]
        yield from self._generate(tokens, params)

    def _grammar(self, response_format: dict[str, Any] | None) -> Any:
        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

        if not response_format or response_format.get("type") in (None, "text"):
            return None
        kind = response_format.get("type")
        schema = None
        if kind == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema")
        elif kind == "json_object":
            schema = response_format.get("schema")  # llama-cpp-python's extension
        else:
            raise InvalidParamsError(f"unsupported response_format type {kind!r}", "response_format")
        if schema is None:
            return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
        try:
            return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        except Exception as e:
            raise InvalidParamsError(f"cannot compile the JSON schema into a grammar: {e}", "response_format") from e

    def _sync_threads(self) -> None:
        want = self._threads_hint() if self._threads_hint else self.threads
        if want != self._threads_now:
            self._lib.llama_set_n_threads(self._llm.ctx, want, want)
            self._threads_now = want

    def _generate(self, tokens: list[int], params: GenerationParams, special: bool = False) -> Iterator[ChatDelta]:
        """Sample until EOG, a stop string or the token budget; one delta per token (often empty while
        text is held back), the last one with finish_reason and usage. `special` renders control tokens
        such as Qwen's <tool_call> as text."""
        n_prompt = len(tokens)
        if n_prompt >= self.context_length:
            raise ContextOverflowError(
                f"the prompt is {n_prompt} tokens but the context window is {self.context_length}; "
                "shorten the messages or raise ctx")
        budget = min(params.max_tokens, self.context_length - n_prompt)
        grammar = self._grammar(params.response_format)
        llm = self._llm
        llm.set_seed(params.seed if params.seed is not None else random.getrandbits(31))
        if params.seed is not None:
            # Reusing a cached prompt prefix evaluates the rest in a different batch shape, which can tip
            # a near-tie between two tokens; with a seed the caller wants the same text every time.
            llm.reset()
        self._sync_threads()
        text = StopText(params.stop)
        n_out = 0
        finish: FinishReason = "length"
        gen = llm.generate(tokens, top_k=TOP_K, top_p=params.top_p, min_p=MIN_P, temp=params.temperature,
                           repeat_penalty=1.0, frequency_penalty=params.frequency_penalty,
                           presence_penalty=params.presence_penalty, grammar=grammar)
        try:
            for token in gen:
                if self._lib.llama_vocab_is_eog(self._vocab, token):
                    finish = "stop"
                    break
                n_out += 1
                piece = text.feed(llm.detokenize([token], special=special))
                if text.stopped:
                    finish = "stop"
                    yield ChatDelta(text=piece)
                    break
                if n_out >= budget:
                    yield ChatDelta(text=piece)
                    break
                yield ChatDelta(text=piece)
                if self._threads_hint is not None and n_out % 8 == 0:
                    self._sync_threads()
        finally:
            gen.close()
        yield ChatDelta(text=text.flush(), finish_reason=finish, usage=Usage(n_prompt, n_out))

    def close(self) -> None:
        self._llm.close()


def _tool_names(tools: list[dict[str, Any]] | None) -> set[str]:
    return {str((t.get("function") or {}).get("name")) for t in tools or [] if isinstance(t, dict)}
