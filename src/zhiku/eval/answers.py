"""Answer evaluation: ask the model each sampled question with the gold passage, with the retrieved top_k
chunks, and with no context, and score the replies (EM, F1, contains, no-answer rate).

The three settings share one prompt so that only the context differs. Generation is greedy (temperature 0)
with a fixed seed, so a rerun gives the same replies.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zhiku.config import Settings
from zhiku.eval.datasets import Dataset, Question
from zhiku.eval.metrics import answer_scores
from zhiku.eval.retrieval import IngestConfig, Workspace, ingest_config, score_hits
from zhiku.kb.types import Hit
from zhiku.llm.base import ContextOverflowError, GenerationParams

if TYPE_CHECKING:
    from zhiku.llm.service import LLMService

Progress = Callable[[str, int, int], None]
CONTEXTS = ("gold", "retrieved", "none")

PROMPTS = {
    "en": {
        "system": "Answer the question with the shortest exact answer: a few words, no explanation. "
                  "If the answer is not in the context, reply: I don't know.",
        "system_none": "Answer the question with the shortest exact answer: a few words, no explanation. "
                       "If you do not know, reply: I don't know.",
        "context": "Context:\n{context}\n\nQuestion: {question}\nAnswer:",
        "none": "Question: {question}\nAnswer:",
    },
    "zh": {
        "system": "请用最简短的原文词语回答问题，不要解释。如果上下文中没有答案，请回答：无法回答。",
        "system_none": "请用最简短的词语回答问题，不要解释。如果不知道，请回答：无法回答。",
        "context": "上下文：\n{context}\n\n问题：{question}\n答案：",
        "none": "问题：{question}\n答案：",
    },
}


@dataclass
class Prepared:
    question: Question
    contexts: dict[str, str | None]  # setting -> context text (None = no context)
    retrieved_hit: float | None = None  # a gold chunk was among the retrieved top_k


def build_messages(question: str, context: str | None, language: str) -> list[dict[str, str]]:
    p = PROMPTS["zh" if language == "zh" else "en"]
    if context is None:
        return [{"role": "system", "content": p["system_none"]},
                {"role": "user", "content": p["none"].format(question=question)}]
    return [{"role": "system", "content": p["system"]},
            {"role": "user", "content": p["context"].format(context=context, question=question)}]


def prepare(settings: Settings, dataset: Dataset, questions: Sequence[Question], contexts: Sequence[str],
            top_k: int, mode: str, config: IngestConfig | None, work_dir: Path | None,
            progress: Progress | None = None) -> tuple[list[Prepared], dict[str, Any]]:
    """The context of every (question, setting); retrieval runs once here, shared by all models."""
    by_id = dataset.corpus_by_id()
    prepared = []
    for q in questions:
        gold = sorted(q.grades().items(), key=lambda kv: -kv[1])
        ctx: dict[str, str | None] = {}
        if "gold" in contexts:
            ctx["gold"] = "\n\n".join(by_id[cid].text for cid, _ in gold) if gold else None
        if "none" in contexts:
            ctx["none"] = None
        prepared.append(Prepared(q, ctx))
    info: dict[str, Any] = {}
    if "retrieved" in contexts:
        config = config or ingest_config(settings)
        ws = Workspace(settings, work_dir)
        try:
            ingested = ws.ensure(dataset, config, progress)
            kb = ws.kb()
            hits_found = []
            for n, p in enumerate(prepared, 1):
                hits: Sequence[Hit] = kb.search(ingested.name, p.question.question, top_k=top_k, mode=mode)
                p.contexts["retrieved"] = "\n\n".join(h.text for h in hits)
                if p.question.grades():
                    p.retrieved_hit = score_hits(hits, ingested.doc_to_corpus, p.question, (top_k,))[f"hit@{top_k}"]
                    hits_found.append(p.retrieved_hit)
                if progress:
                    progress("retrieve", n, len(prepared))
            info = {"kb_chunks": ingested.chunks, "mode": mode, "top_k": top_k,
                    f"retrieved_hit@{top_k}": statistics.fmean(hits_found) if hits_found else None}
        finally:
            ws.close()
    return prepared, info


async def _ask(llm: LLMService, messages: list[dict[str, str]], params: GenerationParams) -> tuple[str, int]:
    text: list[str] = []
    tokens = 0
    async for delta in llm.chat(messages, params):
        text.append(delta.text)
        if delta.usage is not None:
            tokens = delta.usage.completion_tokens
    return "".join(text).strip(), tokens


async def _run_model(llm: LLMService, prepared: Sequence[Prepared], contexts: Sequence[str], language: str,
                     params: GenerationParams, progress: Progress | None, label: str) -> list[dict[str, Any]]:
    rows = []
    total = len(prepared) * len(contexts)
    for n, p in enumerate(prepared):
        for c, setting in enumerate(contexts):
            messages = build_messages(p.question.question, p.contexts.get(setting), language)
            t0 = time.perf_counter()
            error = None
            try:
                reply, tokens = await _ask(llm, messages, params)
            except ContextOverflowError as e:  # scored as a miss, counted separately
                reply, tokens, error = "", 0, str(e)
            row: dict[str, Any] = {"id": p.question.id, "setting": setting, "reply": reply,
                                   "seconds": time.perf_counter() - t0, "tokens": tokens, "error": error}
            row.update(answer_scores(reply, p.question.answers, language) if p.question.answers else {})
            rows.append(row)
            if progress:
                progress(label, n * len(contexts) + c + 1, total)
    return rows


def summarise(rows: Sequence[dict[str, Any]], contexts: Sequence[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for setting in contexts:
        mine = [r for r in rows if r["setting"] == setting and "em" in r]
        if not mine:
            continue
        out[setting] = {
            **{k: statistics.fmean(r[k] for r in mine) for k in ("em", "f1", "contains", "no_answer")},
            "seconds_median": statistics.median(r["seconds"] for r in mine),
            "tokens_mean": statistics.fmean(r["tokens"] for r in mine),
            "errors": float(sum(1 for r in mine if r["error"])),
            "questions": float(len(mine)),
        }
    return out


def run_answers(settings: Settings, dataset: Dataset, questions: Sequence[Question], models: Sequence[str],
                contexts: Sequence[str] = CONTEXTS, top_k: int | None = None, mode: str = "hybrid",
                config: IngestConfig | None = None, work_dir: Path | None = None, max_tokens: int = 48,
                seed: int = 0, progress: Progress | None = None) -> dict[str, Any]:
    """Score each model on the sampled questions in each context setting."""
    from zhiku.llm.service import LLMService

    top_k = top_k or settings.top_k
    prepared, retrieval_info = prepare(settings, dataset, questions, contexts, top_k, mode, config, work_dir,
                                       progress)
    params = GenerationParams(max_tokens=max_tokens, temperature=0.0, seed=seed)
    results: dict[str, Any] = {}
    timing: dict[str, float] = {}
    rows_out: dict[str, list[dict[str, Any]]] = {}
    for model in models:
        llm = LLMService(settings.model_copy(update={"model": model}))
        try:
            llm.start()
            started = time.perf_counter()
            rows = asyncio.run(_run_model(llm, prepared, contexts, dataset.language, params, progress, model))
            results[model] = summarise(rows, contexts)
            timing[model] = round(time.perf_counter() - started, 1)
            rows_out[model] = rows
        finally:
            llm.close()
    return {"models": results, "retrieval": retrieval_info, "seconds": timing, "replies": rows_out,
            "prompts": PROMPTS["zh" if dataset.language == "zh" else "en"], "max_tokens": max_tokens}
