"""Knowledge-base QA: retrieve, select the evidence, stream the answer with its citations, check it, cite sources.

The path of one answer (README, "Answer design"):
1. passages whose documents hold none of the question's constraints (its year, figure, version, named
   entity: chat/constraints.py) cannot answer it: the refusal, without asking the model;
2. the sentences of each passage that bear on the question go into the prompt (chat/evidence.py);
3. the answer streams as written, [n] added after each statement (chat/answer_stream.py);
4. the answer check (chat/answer_check.py) confirms it, or the stronger pack answers instead
   (chat/escalation.py), or a visible correction turns it into the one refusal text.

When nothing passes the score threshold the refusal is returned and the LLM is not called, unless the
request asks (`no_hit: "llm"`, as the Chatchat-compatible route does) for the model to answer alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from zhiku.chat import (
    answer_check,
    citations,
    constraints,
    escalation,
    evidence,
    llm_chat,
    question_parts,
    questions,
)
from zhiku.chat.answer_stream import CORRECTION, RETRY, Citer, Holder, correction
from zhiku.chat.errors import ChatError
from zhiku.chat.sources import KBSource
from zhiku.chat.turn import KB, LLM, Turn, ms_since
from zhiku.chat.types import ChatEvent, delta, sources_event
from zhiku.kb.types import Hit


def hit_passage(index: int, hit: Hit, text: str | None = None) -> str:
    where = [hit.document]
    if hit.page is not None:
        where.append(f"p. {hit.page}")
    if hit.heading:
        where.append(" > ".join(hit.heading))
    return f"[{index}] ({', '.join(where)})\n{(hit.text if text is None else text).strip()}"


def retrieve(kb: KB, kb_name: str, question: str, language: str, top_k: int, score_threshold: float,
             mode: str = "hybrid") -> list[Hit]:
    """The passages for a question: its `top_k` best chunks; for a question with parts (question_parts.py)
    also each part's, taken in turns (the question's best, each part's best, the question's second, ...),
    one more passage per extra part, so that each part's passage is in the prompt."""
    queries = question_parts.parts(question, language)
    ranked = [kb.search(kb_name, q, top_k=top_k, score_threshold=score_threshold, mode=mode)
              for q in [question, *(queries if len(queries) > 1 else [])]]
    budget = top_k + len(queries) - 1
    out: list[Hit] = []
    seen: set[int] = set()
    for rank in range(top_k):
        for hits in ranked:
            if rank < len(hits) and hits[rank].chunk_id not in seen and len(out) < budget:
                seen.add(hits[rank].chunk_id)
                out.append(hits[rank])
    return [h for h in out if h.score >= score_threshold]


async def answer_from(turn: Turn, kb_name: str, template_mode: str = "kb") -> AsyncIterator[ChatEvent]:
    t0 = time.perf_counter()
    threshold = turn.score_threshold
    hits = await asyncio.to_thread(retrieve, turn.kb, kb_name, turn.query, turn.language, turn.top_k, threshold,
                                   turn.request.retrieval)
    turn.timings["retrieval_ms"] = ms_since(t0)
    if not hits and turn.request.no_hit == "llm":
        async for event in llm_chat.run(turn):
            yield event
        return
    if not hits:
        turn.finish_reason = "no_answer"
        yield delta(questions.refusal(turn.settings, turn.language))
        return
    async for event in answer_hits(turn, hits, kb_name, template_mode):
        yield event


async def answer_hits(turn: Turn, hits: list[Hit], kb_name: str, template_mode: str = "kb"
                      ) -> AsyncIterator[ChatEvent]:
    """Answer from these passages (the one path shared by knowledge-base QA, file chat and `zhiku eval
    answers`; the module doc gives the steps).

    The sources come twice: first without a role (what went into the prompt, shown while the answer
    streams), then, once the answer is known, with their roles, the passages that support it first
    (citations.py).
    """
    s = turn.settings
    language = turn.language
    refusal = questions.refusal(s, language)
    kind = questions.kind(turn.query, language)
    titled = [f"{h.document}\n{h.text}" for h in hits]
    if s.answer_check and (unmet := constraints.unmet(turn.query, titled)):
        turn.check = answer_check.Verdict(0.0, None, "", unmet)
        turn.finish_reason = "no_answer"
        sources = [KBSource.from_hit(i, h, kb_name) for i, h in enumerate(hits, 1)]
        yield sources_event(citations.searched(sources))
        yield delta(refusal)
        return
    t1 = time.perf_counter()
    template = turn.template(template_mode)
    await turn.ensure_llm()
    turn.timings["llm_ready_ms"] = ms_since(t1)
    t1 = time.perf_counter()
    chosen = (evidence.select(turn.query, [h.text for h in hits], kind) if s.answer_evidence
              else [evidence.Evidence(i, h.text) for i, h in enumerate(hits)])
    passages = [hit_passage(n, hits[e.hit], e.text) for n, e in enumerate(chosen, 1)]
    messages, used = await asyncio.to_thread(turn.fit, template, {"question": turn.query, "refusal": refusal},
                                             passages)
    turn.timings["prompt_ms"] = ms_since(t1)
    kept = [hits[e.hit] for e in chosen[:used]]
    sources = [KBSource.from_hit(i, h, kb_name) for i, h in enumerate(kept, 1)]
    texts, titles = [h.text for h in kept], [h.document for h in kept]
    yield sources_event(sources)  # not judged yet: shown as the sources while the answer streams
    models = escalation.plan(s, kind, turn.strong is not None)
    text = ""
    for n, which in enumerate(models):
        llm = turn.strong if which == "strong" else None
        if n:  # the earlier model's answer was not confirmed: say so, and let the stronger one answer
            yield correction(RETRY.get(language, RETRY["en"]), "")
        answer: list[str] = []
        async for event in _written(turn, messages, texts, refusal, llm):
            answer = [event.data["replace"]] if "replace" in event.data else [*answer, event.data["text"]]
            yield event
        text = "".join(answer)
        ok = await _confirmed(turn, messages, text, texts, titles, refusal, llm, last=n == len(models) - 1)
        if ok:
            turn.answered_by = which if len(models) > 1 or which == "strong" else None
            break
        if n == len(models) - 1 and text != refusal:
            turn.finish_reason = "no_answer"
            text = refusal
            yield correction(CORRECTION.get(language, CORRECTION["en"]) + refusal, refusal)
    if citations.is_refusal(text, refusal):
        turn.finish_reason = "no_answer"
    yield sources_event(citations.assign_roles(text, sources, texts, refusal, turn.query))


async def _written(turn: Turn, messages: list[dict[str, Any]], texts: list[str], refusal: str,
                   llm: LLM | None) -> AsyncIterator[ChatEvent]:
    """The answer as the model writes it, [n] added as statements end; a reply that only refuses comes out
    as the one refusal text (answer_stream.py)."""
    holder, citer = Holder(), Citer(texts, range(1, len(texts) + 1), turn.query)
    async for event in turn.stream_text(messages, llm=llm):
        shown = citer.feed(holder.feed(event.data.get("text", "")))
        if shown:
            yield delta(shown)
    rest = holder.rest()
    if holder.refusing and not citations.statements(holder.text):
        yield delta(refusal)
        return
    tail = citer.feed(rest) + citer.close()
    if tail:
        yield delta(tail)
    if not holder.refusing and citations.is_refusal(holder.text) and holder.text.strip() != refusal:
        # a refusal worded late ("Based on the documents, ... is not mentioned"): the one text from now on
        yield correction("", refusal)


async def _confirmed(turn: Turn, messages: list[dict[str, Any]], answer: str, texts: list[str],
                     titles: list[str], refusal: str, llm: LLM | None, last: bool = True) -> bool:
    """Whether the answer may stand: a refusal stands when there is no one else to ask; an answer when the
    check is off or passes (answer_check.py); when a stronger model is still to ask, only when it is firmly
    anchored (escalation.CONFIRM_ANCHOR) and no statement of it is unsupported by the passages."""
    s = turn.settings
    if citations.is_refusal(answer, refusal):
        return last  # escalation.plan has decided whether anyone is left to ask
    if not s.answer_check:
        return True
    t0 = time.perf_counter()
    verdict = answer_check.judge(answer, turn.query, texts, titles)
    if s.answer_check_p > 0 or turn.measure_check:
        verdict.p_yes = await answer_check.ask_model(llm or turn.llm, messages, answer, turn.language,
                                                     None if llm else turn.request.model)
    turn.check = verdict
    turn.timings["check_ms"] = ms_since(t0)
    if last:
        return verdict.passes(s.answer_check_anchor, s.answer_check_p)
    # a stronger model is still to ask: only a firmly anchored answer with every statement supported stands
    bar = max(s.answer_check_anchor, escalation.CONFIRM_ANCHOR)
    return verdict.passes(bar, s.answer_check_p) and not verdict.unsupported


async def run(turn: Turn) -> AsyncIterator[ChatEvent]:
    if not turn.request.kb:
        raise ChatError("knowledge-base QA needs a knowledge base: set 'kb'")
    async for event in answer_from(turn, turn.request.kb):
        yield event
