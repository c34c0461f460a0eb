"""The answer evaluation: contexts built from a real knowledge base, replies through the product's KB QA
path, and the faithfulness rates and intervals. A scripted model stands in where a behaviour must be forced
(a reader that refuses, one that invents, one that cites the wrong passage); the real model is in
test_eval_cli.py and test_kb_answers_real.py."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ScriptedModel
from zhiku.chat.prompts import PromptStore
from zhiku.config import Settings
from zhiku.eval import datasets
from zhiku.eval.answer_summary import summarise
from zhiku.eval.answers import Case, Options, _run_model, prepare
from zhiku.eval.datasets import CorpusItem, Dataset, Question
from zhiku.eval.retrieval import Workspace, ingest_config
from zhiku.eval.stats import mean_ci, ratio_ci
from zhiku.kb.types import Hit
from zhiku.llm.base import ChatDelta, GenerationParams, Usage

REFUSAL = "The known information does not answer this question."
FACTS = {"Paris": "The Eiffel Tower stands in Paris and was completed in 1889.",
         "Bonn": "Beethoven was born in Bonn in 1770.",
         "Everest": "Mount Everest is the highest mountain above sea level."}
OTHER = ["Photosynthesis turns light into chemical energy.", "The Amazon carries the most water of any river."]


class Reader(ScriptedModel):
    """Answers from the numbered passages in its prompt: `mode` says how faithfully."""

    model_id = "reader"

    def __init__(self, mode: str = "faithful") -> None:
        self.mode = mode

    async def chat(self, messages: list[dict[str, Any]], params: GenerationParams,
                   model: str | None = None) -> AsyncIterator[ChatDelta]:
        prompt = messages[-1]["content"]
        passages = dict(re.findall(r"\[(\d+)\] \([^)]*\)\n([^\n]+)", prompt))
        reply = REFUSAL
        for answer, fact in FACTS.items():
            found = [n for n, text in passages.items() if text == fact]
            if found and self.mode == "faithful":
                reply = f"{answer} [{found[0]}]"
            elif found and self.mode == "wrong-citation":
                reply = f"It is {answer} [{'2' if found[0] == '1' else '1'}]"
            elif self.mode == "inventor" and answer.lower() in str(messages).lower():
                reply = answer
        if self.mode == "inventor" and reply == REFUSAL:
            reply = "Paris"
        yield ChatDelta(text=reply)
        yield ChatDelta(finish_reason="stop", usage=Usage(10, 3))


QUESTIONS = [Question("q1", "Where is the Eiffel Tower?", ["Paris"], ["g1"]),
             Question("q2", "Where was Beethoven born?", ["Bonn"], ["g2"]),
             Question("q3", "Which is the highest mountain on Earth?", ["Everest", "Mount Everest"], ["g3"])]


def hit(n: int, text: str) -> Hit:
    return Hit(n, n, f"doc{n}", text, 0.5)


def cases() -> list[Case]:
    out = []
    for n, (q, fact) in enumerate(zip(QUESTIONS, FACTS.values(), strict=True)):
        gold, noise = hit(10 + n, fact), [hit(20, OTHER[0]), hit(21, OTHER[1])]
        out.append(Case(q, {"gold": [gold], "retrieved": [noise[0], gold], "negative": noise},
                        {"gold": True, "retrieved": True, "negative": False}))
    return out


def evaluate(tmp_path: Path, reader: Reader) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    # the answer check off: these readers' behaviours are scored as they are (the check: test_answer_check.py)
    settings = Settings(home=tmp_path, no_answer_reply=REFUSAL)
    contexts = ("gold", "retrieved", "negative")
    rows = asyncio.run(_run_model(settings, reader, None, cases(), contexts, "en",  # type: ignore[arg-type]
                                  Options(top_k=2, check=False), None, "reader"))
    return rows, summarise(rows, contexts)


def test_a_faithful_reader_meets_every_target(tmp_path: Path) -> None:
    rows, summary = evaluate(tmp_path, Reader("faithful"))
    assert len(rows) == 9 and all(r["error"] is None for r in rows)
    assert summary["gold"]["contains"] == 1.0 and summary["gold"]["false_refusal"] == 0.0
    assert summary["negative"]["rejection"] == 1.0 and summary["retrieved"]["support_ok"] == 1.0
    retrieved = [r for r in rows if r["context"] == "retrieved"]
    assert all(r["support_role"] == "cited" and r["cites"] == 1.0 for r in retrieved)
    # source n -> passage position: the distractor shares no term with the question, so only the gold passage
    # is in the prompt (chat/evidence.py), as [1]
    assert all(r["numbering"] == {"1": 1} for r in retrieved)
    assert summary["compare"]["retrieved_vs_gold_right"]["ratio"] == 1.0
    assert summary["retrieved"]["cite_ok"] == 1.0 and summary["retrieved"]["total_ms_p90"] >= 0
    assert set(summary["targets"]) == {"right_retrieved", "false_refusal", "rejection", "cite_ok"}
    assert all(t["met"] for t in summary["targets"].values())


def test_an_inventor_fails_negative_rejection(tmp_path: Path) -> None:
    _, summary = evaluate(tmp_path, Reader("inventor"))
    assert summary["negative"]["rejection"] == 0.0 and not summary["targets"]["rejection"]["met"]
    # answers that no passage holds are shown with no supporting source
    assert summary["negative"]["refusal"] == 0.0


def test_a_wrong_citation_is_replaced_by_the_passage_that_holds_the_answer(tmp_path: Path) -> None:
    rows, summary = evaluate(tmp_path, Reader("wrong-citation"))
    retrieved = [r for r in rows if r["context"] == "retrieved"]
    assert all(r["contains"] == 1.0 and r["support_role"] == "attributed" for r in retrieved)
    assert summary["retrieved"]["support_ok"] == 1.0
    # right, but the cited passage does not hold the answer
    assert summary["retrieved"]["right"] == 1.0 and summary["retrieved"]["cite_ok"] == 0.0
    assert not summary["targets"]["cite_ok"]["met"]


def test_counterfactual_rows_count_as_negatives_and_live_rows_are_not_checked_again(tmp_path: Path) -> None:
    rows, _ = evaluate(tmp_path, Reader("inventor"))
    changed = [{**r, "context": "counterfactual", "anchor": 0.0} for r in rows if r["context"] == "gold"]
    summary = summarise(changed, ["counterfactual"], check=(0.35, 0.0))
    assert summary["counterfactual"]["rejection"] == 1.0  # the check turns each answer into a refusal
    assert summary["targets"]["rejection_counterfactual"]["met"]
    live = summarise([{**r, "check_live": True} for r in changed], ["counterfactual"], check=(0.35, 0.0))
    assert live["counterfactual"]["rejection"] == 0.0  # as the product replied


def test_a_reader_that_always_refuses_has_false_refusals(tmp_path: Path) -> None:
    _, summary = evaluate(tmp_path, Reader("refuser"))
    assert summary["gold"]["false_refusal"] == 1.0 and summary["targets"]["false_refusal"]["met"] is False
    assert summary["retrieved"]["support_ok_n"] == 0  # no correct answer to cite


def test_bootstrap_intervals() -> None:
    mean, lo, hi = mean_ci([1.0] * 60 + [0.0] * 40)
    assert mean == pytest.approx(0.6) and 0.49 < lo < 0.6 < hi < 0.71
    assert mean_ci([1.0, 1.0]) == (1.0, 1.0, 1.0)
    ratio, lo, hi = ratio_ci([1.0] * 45 + [0.0] * 55, [1.0] * 90 + [0.0] * 10)
    assert ratio == pytest.approx(0.5) and lo < 0.5 < hi


def test_contexts_from_a_real_knowledge_base(tmp_path: Path, settings: Settings) -> None:
    corpus = [CorpusItem("g1", "Eiffel Tower", FACTS["Paris"]),
              CorpusItem("x1", "Paris", "Paris is the capital of France, on the Seine."),
              CorpusItem("x2", "Tower", "The tower of Pisa leans; it was finished in 1372."),
              CorpusItem("x3", "Eiffel", "Gustave Eiffel's company also built bridges and a tower in Budapest.")]
    ds = Dataset("tiny", "en", corpus, [QUESTIONS[0]])
    s = settings.model_copy(update={"embedder": "use-m3"})
    ws = Workspace(s, tmp_path / "work")
    try:
        found, info = prepare(s, ds, ds.questions, ("gold", "retrieved", "noisy", "negative", "none"),
                              Options(top_k=2), ingest_config(s), ws)
    finally:
        ws.close()
    case = found[0]
    assert [h.text for h in case.hits["gold"] or []] == [FACTS["Paris"]] and case.hits["none"] is None
    assert len(case.hits["retrieved"] or []) == 2 and case.gold_in["retrieved"]
    # distractors hold neither the gold passage nor the answer ("Paris" is in x1)
    negative = [h.text for h in case.hits["negative"] or []]
    assert len(negative) == 2 and FACTS["Paris"] not in negative and not any("Paris" in t for t in negative)
    noisy = [h.text for h in case.hits["noisy"] or []]
    assert len(noisy) == 2 and FACTS["Paris"] in noisy
    # passages are labelled with their article's title, as a real document name would be
    assert {h.document for h in case.hits["retrieved"] or []} <= {c.title for c in corpus}
    assert info["top_k"] == 2


def test_the_evaluation_uses_the_packaged_kb_template(tmp_path: Path) -> None:
    # one template for the product and the evaluation: the eval's prompt store is the packaged one
    store = PromptStore(tmp_path)
    assert "{{ context }}" in store.get("kb", "default", "en").user


def test_split_is_a_fixed_half() -> None:
    qs = [Question(f"id{i}", "q", ["a"], []) for i in range(200)]
    dev, test = datasets.split(qs, "dev"), datasets.split(qs, "test")
    assert not {q.id for q in dev} & {q.id for q in test} and len(dev) + len(test) == 200
    assert 70 < len(dev) < 130 and datasets.split(qs[:50], "dev") == [q for q in dev if q in qs[:50]]


def test_a_stopped_ingestion_is_completed_not_redone(tmp_path: Path, settings: Settings) -> None:
    corpus = [CorpusItem(f"c{n}", f"T{n}", text) for n, text in enumerate([*FACTS.values(), *OTHER])]
    ds = Dataset("tiny", "en", corpus, [QUESTIONS[0]])
    s = settings.model_copy(update={"embedder": "use-m3"})
    ws = Workspace(s, tmp_path / "work")
    try:
        config = ingest_config(s)
        first = ws.ensure(ds, config)
        kb = ws.kb()
        docs = kb.documents(first.name)
        kb.delete_document(first.name, docs[-1].id)  # as if ingestion had stopped before the last item
        again = ws.ensure(ds, config)
        kept = {d.id for d in docs[:-1]}
        # the stored items keep their ids (not ingested again); the missing one is added; all map back
        assert kept < set(again.doc_to_corpus) and len(again.doc_to_corpus) == len(corpus)
        assert sorted(again.doc_to_corpus.values()) == sorted(c.id for c in corpus)
        assert ws.ensure(ds, config).reused
    finally:
        ws.close()


def test_a_replayed_run_gets_the_logged_passages_of_each_context(tmp_path: Path) -> None:
    from zhiku.eval.answers import replayed

    log = tmp_path / "run.jsonl"
    rows = [{"id": "q1", "context": "retrieved", "titles": ["A", "B"], "passages": [OTHER[0], FACTS["Paris"]],
             "gold_in_context": True},
            {"id": "q1", "context": "negative", "titles": ["A"], "passages": [OTHER[0]], "gold_in_context": False},
            {"id": "q2", "context": "retrieved", "titles": ["C"], "passages": [FACTS["Bonn"]], "gold_in_context": True}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    [case] = replayed(log, QUESTIONS, ["retrieved", "negative"])  # q2 lacks its negative context
    assert case.question.id == "q1" and case.gold_in == {"retrieved": True, "negative": False}
    assert [(h.document, h.text) for h in case.hits["retrieved"]] == [("A", OTHER[0]), ("B", FACTS["Paris"])]
    assert [h.text for h in case.hits["negative"]] == [OTHER[0]]
