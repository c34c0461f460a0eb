"""Embedded llama.cpp through llama-cpp-python: one LlamaCppModel serves `parallel` requests at once.

It loads the GGUF once (mmap) and hands generation to a BatchEngine (llm/batching.py): one context,
one sequence per active request, every decode step advancing all of them in one llama_decode. The
prompt comes from the chat template stored in the GGUF metadata, rendered by llama-cpp-python's own
Jinja2ChatFormatter. Usage is exact (every sampled token is counted once), the caller can stop between
any two tokens (its sequence is freed at the next step), and stop strings never leak into the text.
"""

from __future__ import annotations

import atexit
import json
import random
import weakref
from collections.abc import Callable, Iterator
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
from zhiku.llm.native import patch_llama_defaults
from zhiku.llm.text import StopText
from zhiku.llm.tool_calls import parse_tool_calls, template_messages

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
                 threads_hint: Callable[[], int] | None = None, parallel: int = 1, kv_cells: int = 0,
                 prefix_cache: bool = True, prompt_lookup: bool = False, chunk: int = 128,
                 on_busy: Callable[[bool], None] | None = None, solo_kernel: bool = True) -> None:
        """`n_ctx`: the context window of one request; `kv_cells`: the KV budget shared by the `parallel`
        sequences (0 = n_ctx x parallel); `solo_kernel`: see BatchEngine."""
        try:
            import llama_cpp
            from llama_cpp import llama_chat_format
        except ImportError as e:  # pragma: no cover - a core dependency
            raise ModelError("llama-cpp-python is not installed: pip install llama-cpp-python") from e
        from zhiku.llm.batching import BatchEngine
        from zhiku.llm.sampling import load_model

        self._lib = llama_cpp
        try:
            self._model = load_model(str(path))
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"cannot load {path}: {e} (is it a valid GGUF model?)") from e
        try:
            self._engine = BatchEngine(self._model, n_cells=max(kv_cells or n_ctx * parallel, n_ctx),
                                       n_seq=parallel, n_threads=n_threads, n_batch=n_batch, chunk=chunk,
                                       prefix_cache=prefix_cache, threads_hint=threads_hint, on_busy=on_busy,
                                       solo_kernel=solo_kernel)
        except (ValueError, RuntimeError) as e:
            self._model.close()
            raise ModelError(f"cannot create a llama.cpp context for {path}: {e}") from e
        self._closed = False
        closed_at_exit(self)
        self.id = model_id
        self.context_length = n_ctx
        self.threads = n_threads
        self.prompt_lookup = prompt_lookup
        model = self._model
        template = model.metadata().get("tokenizer.chat_template") or llama_chat_format.CHATML_CHAT_TEMPLATE
        self.supports_tools = "tools" in template  # the template renders OpenAI `tools` (Qwen2.5, Hermes)
        eos, bos = model.token_eos(), model.token_bos()
        self._bos = bos
        self._formatter = llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )

    @property
    def engine(self) -> Any:
        return self._engine

    def _tokenize(self, text: str, add_bos: bool, special: bool) -> list[int]:
        return list(self._model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special))

    # -- prompts and counting ---------------------------------------------------------------------

    def _chat_prompt(self, messages: list[dict[str, Any]], params: GenerationParams | None = None) -> list[int]:
        kwargs: dict[str, Any] = {}
        if params is not None and params.tools:
            kwargs = {"tools": params.tools, "tool_choice": params.tool_choice}
        try:
            result = self._formatter(messages=template_messages(messages), **kwargs)  # type: ignore[arg-type]
        except Exception as e:  # the template's own raise_exception, e.g. roles out of order
            raise InvalidParamsError(f"the model's chat template rejected the messages: {e}", "messages") from e
        return self._tokenize(result.prompt, add_bos=not result.added_special, special=True)

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text, add_bos=False, special=False))

    def count_chat_tokens(self, messages: list[dict[str, Any]]) -> int:
        return len(self._chat_prompt(messages))

    # -- generation -------------------------------------------------------------------------------

    def chat(self, messages: list[dict[str, Any]], params: GenerationParams) -> Iterator[ChatDelta]:
        params = tool_choice.resolve(params, self.supports_tools, self.id)  # none/auto/required/named
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
        tokens = self._tokenize(prompt, add_bos=True, special=False)
        if not tokens:  # an empty prompt (and no BOS added): llama.cpp cannot sample from nothing
            tokens = [self._bos]
        yield from self._generate(tokens, params)

    def _grammar(self, response_format: dict[str, Any] | None) -> str | None:
        """The GBNF text for an OpenAI response_format (None for plain text)."""
        from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

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
            return str(JSON_GBNF)
        try:
            return str(json_schema_to_gbnf(json.dumps(schema)))
        except Exception as e:
            raise InvalidParamsError(f"cannot compile the JSON schema into a grammar: {e}", "response_format") from e

    def _generate(self, tokens: list[int], params: GenerationParams, special: bool = False) -> Iterator[ChatDelta]:
        """Sample until EOG, a stop string or the token budget; one delta per token (often empty while
        text is held back), the last one with finish_reason and usage. `special` renders control tokens
        such as Qwen's <tool_call> as text."""
        from zhiku.llm.sampling import EngineError, Request, Sampling

        n_prompt = len(tokens)
        if n_prompt >= self.context_length:
            raise ContextOverflowError(
                f"the prompt is {n_prompt} tokens but the context window is {self.context_length}; "
                "shorten the messages or raise ctx")
        budget = min(params.max_tokens, self.context_length - n_prompt)
        sampling = Sampling(temperature=params.temperature, top_k=TOP_K, top_p=params.top_p, min_p=MIN_P,
                            seed=params.seed if params.seed is not None else random.getrandbits(31),
                            seeded=params.seed is not None,
                            presence_penalty=params.presence_penalty, frequency_penalty=params.frequency_penalty,
                            grammar=self._grammar(params.response_format), lookup=self.prompt_lookup,
                            probe=tuple(self._first_token(t) for t in params.logprobs_of))
        request = Request(tokens, sampling, budget)
        try:
            self._engine.submit(request)
        except EngineError as e:
            raise ModelError(str(e)) from e
        text = StopText(params.stop)
        n_out = 0
        finish: FinishReason = "length"
        try:
            for token in request.tokens():
                n_out += 1
                piece = text.feed(self._model.detokenize([token], special=special))
                yield ChatDelta(text=piece)
                if text.stopped:
                    break
            finish = "stop" if text.stopped or request.finish == "stop" else "length"
        except EngineError as e:
            raise ModelError(str(e)) from e
        finally:
            request.cancel()  # frees the sequence at the engine's next step if it is still running
        logprobs = None
        if params.logprobs_of and request.probe_logprobs is not None:
            logprobs = dict(zip(params.logprobs_of, request.probe_logprobs, strict=True))
        yield ChatDelta(text=text.flush(), finish_reason=finish, usage=Usage(n_prompt, n_out), logprobs=logprobs)

    def _first_token(self, text: str) -> int:
        tokens = self._tokenize(text, add_bos=False, special=False)
        if not tokens:
            raise InvalidParamsError(f"{text!r} has no tokens", "logprobs_of")
        return tokens[0]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._engine.close()
            self._model.close()


def _tool_names(tools: list[dict[str, Any]] | None) -> set[str]:
    return {str((t.get("function") or {}).get("name")) for t in tools or [] if isinstance(t, dict)}
