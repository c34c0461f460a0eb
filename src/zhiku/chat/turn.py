"""One question being answered: its request, history, budget, timings and usage, and the shared LLM call."""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from zhiku.chat.answer_check import Verdict
from zhiku.chat.prompts import PromptStore, Template, choose_language, fit_passages
from zhiku.chat.types import ChatEvent, ChatRequest, closing, delta
from zhiku.config import Settings
from zhiku.kb.types import DocInfo, Hit, KBInfo
from zhiku.llm.base import ChatDelta, GenerationParams, Usage

PROMPT_MARGIN = 16  # tokens kept free: counts of a templated prompt can be off by a few


class LLM(Protocol):
    """What the chat layer needs from the LLMService (a scripted stand-in implements it in tests)."""

    @property
    def model_id(self) -> str: ...
    @property
    def context_length(self) -> int: ...
    def start(self) -> None: ...
    def count_tokens(self, text: str) -> int: ...
    def count_chat_tokens(self, messages: list[dict[str, Any]]) -> int: ...
    def chat(self, messages: list[dict[str, Any]], params: GenerationParams,
             model: str | None = None) -> AsyncIterator[ChatDelta]: ...


class KB(Protocol):
    """What the chat layer needs from the KBService."""

    def create(self, name: str, description: str = "", embedder: str | None = None, chunk_size: int | None = None,
               chunk_overlap: int | None = None, title_enhance: bool | None = None,
               ttl_seconds: float | None = None) -> KBInfo: ...
    def get(self, name: str) -> KBInfo: ...
    def list(self, include_temporary: bool = False) -> builtins.list[KBInfo]: ...
    def delete(self, name: str) -> None: ...
    def add_bytes(self, name: str, filename: str, data: bytes, *, wait: bool = True) -> DocInfo: ...
    def search(self, name: str, query: str, top_k: int | None = None, score_threshold: float | None = None,
               mode: str = "hybrid", document_ids: builtins.list[int] | None = None) -> builtins.list[Hit]: ...
    def expire_temporary(self, now: float | None = None) -> builtins.list[str]: ...


def ms_since(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)


@dataclass
class Turn:
    request: ChatRequest
    settings: Settings
    llm: LLM
    kb: KB
    prompts: PromptStore
    history: list[dict[str, Any]] = field(default_factory=list)
    file_kb: str | None = None
    started: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    llm_calls: int = 0
    finish_reason: str | None = None
    check: Verdict | None = None  # the answer check's verdict (chat/answer_check.py), when it ran
    measure_check: bool = False  # compute every check signal, also those the settings do not act on (eval)
    strong: LLM | None = None  # the stronger pack, when one can take over a KB answer (chat/escalation.py)
    answered_by: str | None = None  # the model whose KB answer was given, when another was tried first
    _decode_started: float | None = None

    @property
    def query(self) -> str:
        return self.request.query

    @property
    def language(self) -> str:
        return choose_language(self.request.language, self.settings.language, self.query)

    @property
    def home(self) -> Path:
        return self.settings.home

    @property
    def top_k(self) -> int:
        return self.settings.retrieval(self.request.top_k)[0]

    @property
    def score_threshold(self) -> float:
        return self.settings.retrieval(score_threshold=self.request.score_threshold)[1]

    @property
    def max_tokens(self) -> int:
        return min(self.request.max_tokens or self.settings.default_max_tokens, self.settings.max_tokens_cap)

    def template(self, mode: str, default: str | None = None) -> Template:
        """The request's named template, else the mode's default one."""
        return self.prompts.get(mode, self.request.prompt_name or default, self.language)

    def params(self, **extra: Any) -> GenerationParams:
        temperature = self.request.temperature
        return GenerationParams(max_tokens=self.max_tokens,
                                temperature=self.settings.temperature if temperature is None else temperature,
                                **extra)

    async def ensure_llm(self) -> None:
        await asyncio.to_thread(self.llm.start)

    def prompt_budget(self) -> int:
        """Tokens the prompt may take: the context window less the answer's room."""
        ctx = self.llm.context_length
        answer = min(self.max_tokens, max(ctx // 2, 64))
        return max(ctx - answer - PROMPT_MARGIN, 32)

    def fit(self, template: Template, values: dict[str, str], passages: list[str]) -> tuple[list[dict[str, Any]], int]:
        """Messages with history and as many passages as fit; history gets at most half the budget."""
        budget = self.prompt_budget()
        history = list(self.history)
        while history and self.llm.count_chat_tokens(template.messages(history, {**values, "context": ""})) \
                > budget // 2:
            history = history[2:]  # drop the oldest turn first

        def build(context: str) -> list[dict[str, Any]]:
            return template.messages(history, {**values, "context": context})

        return fit_passages(build, passages, self.llm.count_chat_tokens, self.llm.count_tokens, budget)

    async def generate(self, messages: list[dict[str, Any]], params: GenerationParams | None = None,
                       llm: LLM | None = None) -> AsyncIterator[ChatDelta]:
        """Stream the LLM (or `llm`, another model), recording prompt-evaluation time, decode time and usage
        across calls."""
        model = self.request.model if llm is None else None
        llm = llm or self.llm
        await asyncio.to_thread(llm.start)
        self.llm_calls += 1
        t0 = time.perf_counter()
        first = True
        async with closing(llm.chat(messages, params or self.params(), model)) as stream:
            async for d in stream:
                if first and (d.text or d.tool_calls):
                    first = False
                    self.timings.setdefault("prompt_eval_ms", ms_since(t0))
                    # the model's own first token, from the question's start (first_token_ms: the first shown)
                    self.timings.setdefault("model_first_token_ms", ms_since(self.started))
                    self._decode_started = self._decode_started or time.perf_counter()
                if d.usage is not None:
                    self.usage.prompt_tokens += d.usage.prompt_tokens
                    self.usage.completion_tokens += d.usage.completion_tokens
                if d.finish_reason:
                    self.finish_reason = d.finish_reason
                yield d

    async def stream_text(self, messages: list[dict[str, Any]], params: GenerationParams | None = None,
                          llm: LLM | None = None) -> AsyncIterator[ChatEvent]:
        async with closing(self.generate(messages, params, llm)) as stream:
            async for d in stream:
                if d.text:
                    yield delta(d.text)

    def note_output(self) -> None:
        """Called as each answer event goes out: the first one fixes time to first token."""
        self.timings.setdefault("first_token_ms", ms_since(self.started))

    def final_timings(self) -> dict[str, float]:
        t = dict(self.timings)
        t["total_ms"] = ms_since(self.started)
        if self._decode_started is not None and self.usage.completion_tokens > 1:
            decode_s = time.perf_counter() - self._decode_started
            if decode_s > 0:
                t["decode_tokens_per_s"] = round((self.usage.completion_tokens - 1) / decode_s, 2)
        return t

    def usage_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.usage.prompt_tokens, "completion_tokens": self.usage.completion_tokens,
                "total_tokens": self.usage.total_tokens}

