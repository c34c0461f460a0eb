"""Knowledge-base QA: retrieve, fit the passages into the prompt, stream the answer, cite numbered sources.

When nothing passes the score threshold the fixed `no_answer_reply` is returned and the LLM is not called,
unless the request asks (`no_hit: "llm"`, as the Chatchat-compatible route does) for the model to answer alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from zhiku.chat import answer_check, citations, llm_chat
from zhiku.chat.errors import ChatError
from zhiku.chat.sources import KBSource
from zhiku.chat.turn import Turn, ms_since
from zhiku.chat.types import ChatEvent, delta, sources_event
from zhiku.kb.types import Hit


def hit_passage(index: int, hit: Hit) -> str:
    where = [hit.document]
    if hit.page is not None:
        where.append(f"p. {hit.page}")
    if hit.heading:
        where.append(" > ".join(hit.heading))
    return f"[{index}] ({', '.join(where)})\n{hit.text.strip()}"


async def answer_from(turn: Turn, kb_name: str, template_mode: str = "kb") -> AsyncIterator[ChatEvent]:
    t0 = time.perf_counter()
    threshold = turn.score_threshold
    hits = await asyncio.to_thread(turn.kb.search, kb_name, turn.query, top_k=turn.top_k,
                                   score_threshold=threshold, mode=turn.request.retrieval)
    hits = [h for h in hits if h.score >= threshold]
    turn.timings["retrieval_ms"] = ms_since(t0)
    if not hits and turn.request.no_hit == "llm":
        async for event in llm_chat.run(turn):
            yield event
        return
    if not hits:
        turn.finish_reason = "no_answer"
        yield delta(turn.settings.no_answer_reply)
        return
    async for event in answer_hits(turn, hits, kb_name, template_mode):
        yield event


async def answer_hits(turn: Turn, hits: list[Hit], kb_name: str, template_mode: str = "kb"
                      ) -> AsyncIterator[ChatEvent]:
    """Answer from these passages (the one path shared by knowledge-base QA, file chat and `zhiku eval
    answers`): fit them into the template, stream the answer, then the sources with their roles.

    The sources come twice: first without a role (what went into the prompt, shown while the answer
    streams), then, once the answer is known, with their roles, the passages that support it first
    (citations.py).
    """
    t1 = time.perf_counter()
    template = turn.template(template_mode)
    await turn.ensure_llm()
    turn.timings["llm_ready_ms"] = ms_since(t1)
    t1 = time.perf_counter()
    passages = [hit_passage(i, h) for i, h in enumerate(hits, 1)]
    messages, used = await asyncio.to_thread(turn.fit, template, {"question": turn.query}, passages)
    turn.timings["prompt_ms"] = ms_since(t1)
    sources = [KBSource.from_hit(i, h, kb_name) for i, h in enumerate(hits[:used], 1)]
    yield sources_event(sources)  # not judged yet: shown as the sources while the answer streams
    hold = turn.settings.answer_check  # a checked answer is held back until the check has passed
    answer: list[str] = []
    async for event in turn.stream_text(messages):
        answer.append(event.data.get("text", ""))
        if not hold:
            yield event
    text = "".join(answer)
    texts = [h.text for h in hits[:used]]
    if hold:
        text = await _checked(turn, messages, text, texts, [h.document for h in hits[:used]])
        yield delta(text)
    yield sources_event(citations.assign_roles(text, sources, texts, turn.settings.no_answer_reply, turn.query))


async def _checked(turn: Turn, messages: list[dict[str, Any]], answer: str, texts: list[str],
                   titles: list[str]) -> str:
    """The answer, or the no-answer reply when the passages are not found to state it (answer_check.py)."""
    s = turn.settings
    if citations.is_refusal(answer, s.no_answer_reply):
        return answer
    t0 = time.perf_counter()
    p = None
    if s.answer_check_p > 0 or turn.measure_check:
        p = await answer_check.ask_model(turn.llm, messages, answer, turn.language, turn.request.model)
    anchor = answer_check.anchoring(answer, turn.query, texts, titles)
    turn.check = answer_check.Verdict(anchor, p, answer)
    turn.timings["check_ms"] = ms_since(t0)
    if not turn.check.passes(s.answer_check_anchor, s.answer_check_p):
        turn.finish_reason = "no_answer"
        return s.no_answer_reply
    return answer


async def run(turn: Turn) -> AsyncIterator[ChatEvent]:
    if not turn.request.kb:
        raise ChatError("knowledge-base QA needs a knowledge base: set 'kb'")
    async for event in answer_from(turn, turn.request.kb):
        yield event
