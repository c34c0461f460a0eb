"""Answer evaluation through the product's own knowledge-base QA path.

Each sampled question is answered by `chat.kb_chat.answer_hits` — the template from prompts.toml, the
numbered passage layout, the fitting into the context window and the citation roles a user gets — with
different passages in the prompt (the *contexts*):

- ``gold``: the question's own passage;
- ``retrieved``: the top_k chunks hybrid search finds in a knowledge base of the whole corpus;
- ``noisy``: the gold passage among top_k - 1 distractors (noise robustness), at a seeded position;
- ``negative``: top_k distractors only (negative rejection: the right reply is a refusal);
- ``none``: no knowledge base, the plain LLM chat path (what the model knows by itself);
- ``counterfactual``: the gold passage of a counterfactual question (kinds.py), which no longer answers it:
  the right reply is a refusal.

Distractors are the question's own best-ranked non-gold chunks that do not contain a reference answer:
the hardest honest negatives. Generation is greedy, so a rerun gives the same replies.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zhiku.chat import citations, escalation, kb_chat, llm_chat, questions
from zhiku.chat.answer_check import Verdict
from zhiku.chat.prompts import PromptStore
from zhiku.chat.sources import sources_from
from zhiku.chat.turn import Turn
from zhiku.chat.types import ChatRequest, ChatResult, closing
from zhiku.config import Settings
from zhiku.eval.answer_summary import check_of, summarise
from zhiku.eval.datasets import Dataset, Question
from zhiku.eval.metrics import answer_scores, contains
from zhiku.eval.rescore import NEGATIVE, rescore
from zhiku.eval.retrieval import IngestConfig, Workspace, ingest_config
from zhiku.eval.scoring import Pool
from zhiku.kb.types import Hit
from zhiku.llm.base import ContextOverflowError

if TYPE_CHECKING:
    from zhiku.kb.service import KBService
    from zhiku.llm.service import LLMService

Progress = Callable[[str, int, int], None]
CONTEXTS = ("gold", "retrieved", "noisy", "negative", "none", "counterfactual")
DEFAULT_CONTEXTS = ("gold", "retrieved", "negative", "none")
NEEDS_SEARCH = {"retrieved", "noisy", "negative"}
EVAL_KB = "eval"


@dataclass
class Case:
    """One question and the passages of each context (None: no knowledge base at all)."""

    question: Question
    hits: dict[str, list[Hit] | None] = field(default_factory=dict)
    gold_in: dict[str, bool] = field(default_factory=dict)  # context -> the gold passage is in the prompt


@dataclass(frozen=True)
class Options:
    """What the answer evaluation varies (the levers of `--grid`)."""

    top_k: int = 3
    mode: str = "hybrid"
    prompt: str = "default"
    max_tokens: int = 64
    check: bool = True  # run the answer check and log its signals (applied by the summary, answer_summary.py)
    check_model: bool = False  # ... also the model's P(yes), which the default check does not ask for
    live: bool = False  # the product exactly as configured (the check applied as it answers, not afterwards)
    replay: str | None = None  # a run log whose logged passages each (question, context) gets: a paired rerun


def _gold_hits(question: Question, dataset: Dataset) -> list[Hit]:
    by_id = dataset.corpus_by_id()
    gold = sorted(question.grades().items(), key=lambda kv: -kv[1])
    return [Hit(-1 - n, -1 - n, by_id[cid].title or cid, by_id[cid].text, 1.0) for n, (cid, _) in enumerate(gold)]


def prepare(settings: Settings, dataset: Dataset, questions: Sequence[Question], contexts: Sequence[str],
            options: Options, config: IngestConfig | None, ws: Workspace,
            progress: Progress | None = None) -> tuple[list[Case], dict[str, Any]]:
    """The passages of every (question, context); retrieval runs once here, shared by all models."""
    if options.replay:
        return replayed(Path(options.replay), questions, contexts), {"replay": options.replay}
    cases = [Case(q) for q in questions]
    for case in cases:
        gold = _gold_hits(case.question, dataset)
        if "gold" in contexts:
            case.hits["gold"], case.gold_in["gold"] = gold, bool(gold)
        if "counterfactual" in contexts:  # the passage that answered the question before it was changed
            case.hits["counterfactual"], case.gold_in["counterfactual"] = gold, False
        if "none" in contexts:
            case.hits["none"], case.gold_in["none"] = None, False
    if not NEEDS_SEARCH & set(contexts):
        return cases, {}
    ingested = ws.ensure(dataset, config or ingest_config(settings), progress)
    kb = ws.kb()
    titles = {c.id: c.title or c.id for c in dataset.corpus}
    k = options.top_k
    for n, case in enumerate(cases, 1):
        q = case.question
        gold_ids = set(q.grades())
        # deep enough to find k distractors past the gold chunks and the chunks holding an answer
        found = kb.search(ingested.name, q.question, top_k=max(4 * k, 12), score_threshold=0.0,
                          mode=options.mode)
        found = [replace(h, document=titles.get(ingested.doc_to_corpus.get(h.document_id, ""), h.document))
                 for h in found]
        is_gold = [ingested.doc_to_corpus.get(h.document_id) in gold_ids for h in found]
        if "retrieved" in contexts:  # as the product retrieves: a question with parts also by each part
            retrieved = [replace(h, document=titles.get(ingested.doc_to_corpus.get(h.document_id, ""), h.document))
                         for h in kb_chat.retrieve(kb, ingested.name, q.question, dataset.language, k, 0.0,
                                                   options.mode)]
            case.hits["retrieved"] = retrieved
            case.gold_in["retrieved"] = any(ingested.doc_to_corpus.get(h.document_id) in gold_ids for h in retrieved)
        distractors = [h for h, g in zip(found, is_gold, strict=True)
                       if not g and not contains(h.text, q.answers, dataset.language)]
        if "negative" in contexts:
            case.hits["negative"], case.gold_in["negative"] = distractors[:k], False
        if "noisy" in contexts:
            gold = _gold_hits(q, dataset)
            noisy = distractors[:k - 1]
            if gold:
                noisy.insert(random.Random(f"{q.id}:{k}").randint(0, len(noisy)), gold[0])
            case.hits["noisy"], case.gold_in["noisy"] = noisy, bool(gold)
        if progress:
            progress("retrieve", n, len(cases))
    info = {"kb_chunks": ingested.chunks, "mode": options.mode, "top_k": k}
    return cases, info


def replayed(log: Path, questions: Sequence[Question], contexts: Sequence[str]) -> list[Case]:
    """The cases of the questions `log` answered in every context, each with the passages (and titles)
    logged there: another pipeline answers from exactly the same prompts' passages, no search."""
    logged: dict[tuple[str, str], dict[str, Any]] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            logged[r["id"], r["context"]] = r
    cases = []
    for q in questions:
        if all((q.id, c) in logged for c in contexts):
            case = Case(q)
            for c in contexts:
                r = logged[q.id, c]
                case.hits[c] = [Hit(-1 - n, -1 - n, title, text, 1.0)
                                for n, (title, text) in enumerate(zip(r["titles"], r["passages"], strict=True))]
                case.gold_in[c] = bool(r["gold_in_context"])
            cases.append(case)
    return cases


async def answer_one(settings: Settings, llm: LLMService, kb: KBService, prompts: PromptStore, question: str,
                     hits: list[Hit] | None, options: Options) -> tuple[ChatResult, Verdict | None]:
    """One answer exactly as a user gets it: knowledge-base QA over `hits`, or plain chat for None; and
    the answer check's verdict when it ran, with every signal measured. The check never replaces the answer
    here (thresholds 0): the summary applies thresholds afterwards, so one run shows every trade-off; with
    `options.live` the settings are left as configured and the reply is what the user reads."""
    if not options.live:
        settings = settings.model_copy(update={"answer_check": options.check, "answer_check_anchor": 0.0,
                                               "answer_check_p": 0.0})
    request = ChatRequest(query=question, mode="kb" if hits is not None else "llm", kb=EVAL_KB, save=False,
                          temperature=0.0, max_tokens=options.max_tokens, top_k=options.top_k,
                          prompt_name=options.prompt if hits is not None else None)
    turn = Turn(request, settings, llm, kb, prompts, measure_check=options.check_model)
    if options.live and hits:  # as ChatService does: the stronger pack an answer may escalate to (answer_quality)
        turn.strong = escalation.shared(settings).get()
    if hits is None:
        events = llm_chat.run(turn)
    elif not hits:  # what knowledge-base QA replies when nothing is found
        return ChatResult(answer=questions.refusal(settings, turn.language)), None
    else:
        events = kb_chat.answer_hits(turn, hits, EVAL_KB)
    result = ChatResult()
    async with closing(events) as stream:
        async for event in stream:
            if event.type == "delta":
                turn.note_output()  # as ChatService does: the first answer text fixes time to first token
            result.add(event)
    timings: dict[str, Any] = dict(turn.final_timings())
    timings["answered_by"] = turn.answered_by  # which model's answer the time includes (escalation)
    result.timings, result.usage = timings, turn.usage_dict()
    return result, turn.check


def score_row(case: Case, context: str, result: ChatResult, language: str, no_answer: str,
              check: Verdict | None = None, pool: Pool | None = None, live: bool = False) -> dict[str, Any]:
    q = case.question
    reply = result.answer.strip()
    hits = case.hits.get(context) or []
    row: dict[str, Any] = {"id": q.id, "context": context, "reply": reply, "kind": q.kind, "note": q.note,
                           "language": language, "check_live": live,
                           # the references and the prompt's candidate spans: `rescore` judges from the log
                           "parts": q.answer_parts() if context not in NEGATIVE else [],
                           "candidates": pool.candidates_in([h.text for h in hits]) if pool and hits else [],
                           "gold_in_context": case.gold_in.get(context, False),
                           "ttft_ms": result.timings.get("first_token_ms"),
                           "total_ms": result.timings.get("total_ms"), "error": result.error,
                           "answered_by": result.timings.get("answered_by"),
                           "prompt_tokens": result.usage.get("prompt_tokens"),
                           "completion_tokens": result.usage.get("completion_tokens"),
                           "check_p": check.p_yes if check else None,
                           "anchor": check.anchor if check else None, "check_ms": result.timings.get("check_ms"),
                           # what was in the prompt, so a later answerability rule can be judged from the log
                           "question": q.question, "titles": [h.document for h in hits],
                           "passages": [h.text for h in hits]}
    row.update(answer_scores(reply, q.answers, language))
    row["refusal"] = float(citations.is_refusal(reply, no_answer))
    sources = sources_from(result.sources)
    # [n] in the reply is the source numbered n, which need not be the n-th passage (a pipeline may number
    # only the passages it puts in the prompt): the passage position of each source, by chunk
    position = {h.chunk_id: i for i, h in enumerate(hits)}
    row["numbering"] = {str(src.index): position[cid] for src in sources
                        if (cid := getattr(src, "chunk_id", None)) is not None and cid in position}
    support = citations.supporting(sources)
    row["cites"] = float(bool(citations.cited_numbers(reply)))
    row["supported"] = float(bool(support))
    first = support[0] if support else None
    # found by chunk, not by number: the prompt numbers only the passages whose evidence it holds (chat/evidence.py)
    by_chunk: dict[int | None, str] = {h.chunk_id: h.text for h in hits}
    text = by_chunk.get(getattr(first, "chunk_id", None), "") if first else ""
    # the first passage shown as support holds a reference answer
    row["support_ok"] = float(bool(text) and bool(contains(text, q.answers, language)))
    row["support_role"] = first.role if first else None
    row.update(rescore(row))
    return row


async def _run_model(settings: Settings, llm: LLMService, kb: KBService, cases: Sequence[Case],
                     contexts: Sequence[str], language: str, options: Options, progress: Progress | None,
                     label: str, log: Path | None = None, pool: Pool | None = None) -> list[dict[str, Any]]:
    """Every (question, context) reply, scored; each row is also appended to `log` (JSON lines) as it comes,
    so a long run that is stopped still leaves its replies."""
    rows = []
    total = len(cases) * len(contexts)
    done = _logged(log, label)
    with tempfile.TemporaryDirectory(prefix="zhiku-eval-prompts-") as tmp:
        prompts = PromptStore(Path(tmp))  # the packaged templates, never a user's edited copy
        for n, case in enumerate(cases):
            for c, context in enumerate(contexts):
                if (case.question.id, context) in done:  # a resumed run: this reply is in the log already
                    rows.append(done[case.question.id, context])
                    continue
                check = None
                try:
                    result, check = await answer_one(settings, llm, kb, prompts, case.question.question,
                                                     case.hits.get(context), options)
                except ContextOverflowError as e:  # scored as a miss, counted separately
                    result = ChatResult(error=str(e))
                rows.append(score_row(case, context, result, language, settings.no_answer_reply, check, pool,
                                      options.live))
                if log is not None:
                    with log.open("a", encoding="utf-8") as f:
                        f.write(json.dumps({"model": label, **rows[-1]}, ensure_ascii=False) + "\n")
                if progress:
                    progress(label, n * len(contexts) + c + 1, total)
    return rows


def _logged(log: Path | None, label: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The rows of `label` already in `log` by (question, context): a rerun with the same log resumes."""
    if log is None or not log.exists():
        return {}
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {(r["id"], r["context"]): {k: v for k, v in r.items() if k != "model"}
            for r in rows if r.get("model") == label}


def run_answers(settings: Settings, dataset: Dataset, questions: Sequence[Question], models: Sequence[str],
                contexts: Sequence[str] = DEFAULT_CONTEXTS, options: Options | None = None,
                config: IngestConfig | None = None, work_dir: Path | None = None, seed: int = 0,
                progress: Progress | None = None, log: Path | None = None) -> dict[str, Any]:
    """Score each model on the sampled questions in each context."""
    from zhiku.llm.service import LLMService

    options = options or Options(top_k=settings.top_k)
    ws = Workspace(settings, work_dir)
    results: dict[str, Any] = {}
    rows_out: dict[str, list[dict[str, Any]]] = {}
    timing: dict[str, float] = {}
    pool = Pool((a for q in dataset.questions for a in q.answers), dataset.language)
    try:
        cases, retrieval_info = prepare(settings, dataset, questions, contexts, options, config, ws, progress)
        # answered in a seeded random order: a run stopped at any point has answered a random sample
        random.Random(seed).shuffle(cases)
        run_settings = ws.settings.model_copy(update={"top_k": options.top_k})
        for model in models:
            llm = LLMService(run_settings.model_copy(update={"model": model}))
            try:
                llm.start()
                started = time.perf_counter()
                rows = asyncio.run(_run_model(run_settings, llm, ws.kb(), cases, contexts, dataset.language,
                                              options, progress, model, log, pool))
                timing[model] = round(time.perf_counter() - started, 1)
            finally:
                llm.close()
            check = check_of(settings) if options.check and not options.live else None
            results[model] = summarise(rows, contexts, seed, check)
            rows_out[model] = rows
    finally:
        ws.close()
    return {"models": results, "retrieval": retrieval_info, "seconds": timing, "replies": rows_out,
            "options": options.__dict__, "contexts": list(contexts), "language": dataset.language}
