"""Search-engine QA: web results from a provider feed the same QA flow and are cited by URL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from zhiku.chat.sources import WebSource
from zhiku.chat.turn import Turn, ms_since
from zhiku.chat.types import ChatEvent, delta, sources_event
from zhiku.search_engines import SearchProvider, get_provider

NO_RESULTS = "搜索没有返回结果。/ The search returned no results."


async def run(turn: Turn, provider: SearchProvider | None = None) -> AsyncIterator[ChatEvent]:
    provider = provider or get_provider(turn.settings, turn.request.search_engine)
    t0 = time.perf_counter()
    results = await provider.search(turn.query, max_results=max(turn.top_k, 3))  # SearchError: "unavailable"
    turn.timings["retrieval_ms"] = ms_since(t0)
    if not results:
        turn.finish_reason = "no_answer"
        yield delta(NO_RESULTS)
        return
    t1 = time.perf_counter()
    template = turn.template("search")
    await turn.ensure_llm()
    passages = [f"[{i}] {r.title} ({r.url})\n{r.snippet.strip()}" for i, r in enumerate(results, 1)]
    messages, used = await asyncio.to_thread(turn.fit, template, {"question": turn.query}, passages)
    turn.timings["prompt_ms"] = ms_since(t1)
    yield sources_event([WebSource.from_result(i, r, provider.name) for i, r in enumerate(results[:used], 1)])
    async for event in turn.stream_text(messages):
        yield event
