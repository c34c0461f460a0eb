"""LLMService: the one entry point to the chat model for routes, the chat service, the UI and the CLI.

It builds the configured backend (`parallel` slots of it), shares the slots through the Scheduler and
keeps the numbers /metrics reports. It knows nothing about HTTP.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from pathlib import Path
from typing import Any

from zhiku import packs
from zhiku.config import Settings
from zhiku.errors import ModelError
from zhiku.llm.base import (
    ChatDelta,
    ChatModel,
    GenerationParams,
    QueueFullError,
    UnknownModelError,
)
from zhiku.llm.cores import CORES
from zhiku.llm.scheduler import Outcome, Scheduler

# Prometheus-style bucket bounds (upper edges); the last bucket is +Inf.
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
RATE_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0)


class Histogram:
    """Cumulative-bucket histogram, the shape Prometheus exposes; kept here so the service needs no
    metrics library and each app can export it into its own registry."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        i = next((i for i, b in enumerate(self.bounds) if value <= b), len(self.bounds))
        self.counts[i] += 1
        self.sum += value
        self.count += 1

    def snapshot(self) -> dict[str, Any]:
        cumulative, total = [], 0
        for c in self.counts:
            total += c
            cumulative.append(total)
        return {"buckets": [*zip([*map(str, self.bounds), "+Inf"], cumulative, strict=True)],
                "sum": self.sum, "count": self.count}


def served_id(model: str) -> str:
    """The id clients use: the pack name, or the file stem for a path."""
    return Path(model).stem if packs.is_path_like(model) else model


class LLMService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._model_id = served_id(settings.model) if settings.llm_backend != "openai" else settings.model
        self._slots: list[ChatModel] = []
        self._scheduler: Scheduler[ChatModel] | None = None
        self._start_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._counters = {"requests_total": 0, "requests_rejected_total": 0, "requests_cancelled_total": 0,
                          "requests_failed_total": 0, "prompt_tokens_total": 0, "completion_tokens_total": 0}
        self._ttft = Histogram(TTFT_BUCKETS)
        self._rate = Histogram(RATE_BUCKETS)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Load the model into `parallel` slots. Idempotent; raises ModelError with a fix."""
        with self._start_lock:
            if self._scheduler is not None:
                return
            slots = self._build_slots()
            self._slots = slots
            self._scheduler = Scheduler(slots, self.settings.queue_size, on_done=self._record)

    def _build_slots(self) -> list[ChatModel]:
        s = self.settings
        if s.llm_backend == "openai":
            from zhiku.llm.openai_compat import OpenAICompatModel

            remote = OpenAICompatModel(s.upstream_base_url, s.model, api_key=s.upstream_api_key,
                                       timeout=s.upstream_timeout, context_length=s.ctx)
            # one client, `parallel` concurrent streams; the upstream does its own scheduling
            return [remote] * s.parallel
        path = packs.resolve(s.models_path, s.model)
        if s.llm_backend == "chatglm_cpp":
            from zhiku.llm.chatglm_cpp import ChatGLMCppModel

            return [ChatGLMCppModel(path, self._model_id, n_ctx=s.ctx) for _ in range(s.parallel)]
        from zhiku.llm.llama_cpp import LlamaCppModel

        CORES.enabled = s.share_cores
        # one context batching `parallel` sequences; the scheduler hands out `parallel` places in it
        model = LlamaCppModel(path, self._model_id, n_ctx=s.ctx, n_threads=s.resolved_threads, parallel=s.parallel,
                              kv_cells=s.kv_cells, prefix_cache=s.prefix_cache, prompt_lookup=s.prompt_lookup,
                              chunk=s.prefill_chunk, threads_hint=self._generation_threads,
                              on_busy=CORES.generation)
        return [model] * s.parallel

    def _generation_threads(self) -> int:
        return CORES.generation_threads(self.settings.resolved_threads)

    def close(self) -> None:
        with self._start_lock:
            if self._scheduler is not None:
                self._scheduler.close()
            for slot in {id(s): s for s in self._slots}.values():
                slot.close()
            self._slots = []
            self._scheduler = None

    @property
    def started(self) -> bool:
        return self._scheduler is not None

    # -- facts ----------------------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return self._model_id

    def model_ids(self) -> list[str]:
        return [self._model_id]

    @property
    def context_length(self) -> int:
        return self._slots[0].context_length if self._slots else self.settings.ctx

    def _slot0(self) -> ChatModel:
        self.start()
        return self._slots[0]

    def supports_tools(self, model: str | None = None) -> bool:
        """Whether the model takes native tool calls (its chat template renders `tools`); used by the agent."""
        return bool(getattr(self._slot0(), "supports_tools", False))

    def engine(self) -> Any:
        """The llama.cpp batching engine (its counters), or None for other backends."""
        return getattr(self._slot0(), "engine", None)

    def set_prompt_lookup(self, on: bool) -> None:
        """Turn prompt-lookup drafting on or off for the requests that follow (llama.cpp backend)."""
        for slot in self._slots:
            if hasattr(slot, "prompt_lookup"):
                slot.prompt_lookup = on

    def count_tokens(self, text: str) -> int:
        return self._slot0().count_tokens(text)

    def count_chat_tokens(self, messages: list[dict[str, Any]]) -> int:
        return self._slot0().count_chat_tokens(messages)

    # -- generation -----------------------------------------------------------------------------

    def chat(self, messages: list[dict[str, Any]], params: GenerationParams,
             model: str | None = None) -> AsyncGenerator[ChatDelta, None]:
        return self._run(model, lambda slot: slot.chat(messages, params))

    def complete(self, prompt: str, params: GenerationParams, model: str | None = None) -> AsyncGenerator[ChatDelta, None]:
        return self._run(model, lambda slot: slot.complete(prompt, params))

    async def _run(self, model: str | None, job: Callable[[ChatModel], Iterator[ChatDelta]]) -> AsyncGenerator[ChatDelta, None]:
        if model and model not in self.model_ids():
            raise UnknownModelError(f"model {model!r} is not served here; available: {', '.join(self.model_ids())}")
        if self._scheduler is None:
            await asyncio.to_thread(self.start)
        scheduler = self._scheduler
        if scheduler is None:  # closed meanwhile
            raise ModelError("the LLM service is shut down")
        self._count("requests_total")
        gen = scheduler.stream(job)
        try:
            async for delta in gen:
                yield delta
        except Exception as e:
            self._count("requests_rejected_total" if isinstance(e, QueueFullError) else "requests_failed_total")
            raise
        finally:
            await gen.aclose()

    # -- numbers --------------------------------------------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        with self._stats_lock:
            self._counters[name] += n

    def _record(self, o: Outcome) -> None:
        with self._stats_lock:
            self._counters["prompt_tokens_total"] += o.prompt_tokens
            self._counters["completion_tokens_total"] += o.completion_tokens
            if o.status == "cancelled":
                self._counters["requests_cancelled_total"] += 1
            if o.ttft_s is not None:
                self._ttft.observe(o.ttft_s)
            if o.completion_tokens > 1 and o.decode_s > 0:
                self._rate.observe((o.completion_tokens - 1) / o.decode_s)

    def stats(self) -> dict[str, Any]:
        s = self.settings
        pool = self._scheduler.pool if self._scheduler is not None else None
        with self._stats_lock:
            return {
                "model": self._model_id, "backend": s.llm_backend, "loaded": self.started,
                "ctx": self.context_length, "threads": s.resolved_threads, "parallel": s.parallel,
                "queue_size": s.queue_size,
                "queue_depth": pool.waiting if pool else 0, "active": pool.busy if pool else 0,
                "decoding": self._scheduler.decoding if self._scheduler is not None else 0,
                **self._counters,
                "ttft_seconds": self._ttft.snapshot(), "decode_tokens_per_second": self._rate.snapshot(),
            }
