"""Plain LLM chat: a named template, the last N turns of history, the question."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from zhiku.chat.turn import Turn, ms_since
from zhiku.chat.types import ChatEvent


async def run(turn: Turn) -> AsyncIterator[ChatEvent]:
    t0 = time.perf_counter()
    template = turn.template("llm")
    await turn.ensure_llm()
    messages, _ = await asyncio.to_thread(turn.fit, template, {"question": turn.query}, [])
    turn.timings["prompt_ms"] = ms_since(t0)
    async for event in turn.stream_text(messages):
        yield event
