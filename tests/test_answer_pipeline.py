"""The knowledge-base answer pipeline with scripted models (chat/kb_chat.py and the modules it calls): what
streams and when, citations added as statements end, the one refusal text, the visible correction of a
refuted answer, the constraint gate, evidence selection and escalation to the stronger pack.

Scripted models stand in where a behaviour must be forced (a model that copies a distractor, a weak model
whose answer is refuted and a strong one that answers); the real packs' behaviour is pinned in
test_kb_answers_real.py and measured by `zhiku eval answers`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from conftest import ScriptedModel
from zhiku.chat import constraints, evidence, kb_chat, questions
from zhiku.chat.answer_stream import Citer
from zhiku.chat.citations import is_refusal, statements
from zhiku.chat.prompts import PromptStore
from zhiku.chat.sources import sources_from
from zhiku.chat.turn import Turn
from zhiku.chat.types import ChatEvent, ChatRequest, ChatResult
from zhiku.config import Settings
from zhiku.kb.types import Hit
from zhiku.llm.base import ChatDelta, GenerationParams, Usage

HARBOUR = ["Ferries to the island leave the harbour at 9 am and 4 pm every day. The crossing takes forty minutes.",
           "The Saltmarsh lighthouse was built in 1871. It is painted red and white.",
           "The harbour café opens at 8 am. It sells tea and cake."]
REPORTS = ["2018年公司年报：全年营业收入为35亿元，员工人数为1200人。", "2018年公司在上海设立了研发中心。"]


class Writer(ScriptedModel):
    """Writes `answer` a few characters at a time (as a model streams tokens) and records its prompts."""

    def __init__(self, answer: str, model_id: str = "scripted") -> None:
        self.answer, self.model_id = answer, model_id
        self.prompts: list[list[dict[str, Any]]] = []

    async def chat(self, messages: list[dict[str, Any]], params: GenerationParams,
                   model: str | None = None) -> AsyncIterator[ChatDelta]:
        self.prompts.append(messages)
        for i in range(0, len(self.answer), 3):
            yield ChatDelta(text=self.answer[i:i + 3])
        yield ChatDelta(finish_reason="stop", usage=Usage(50, len(self.answer) // 3 + 1))


def ask(tmp_path: Path, llm: Writer, question: str, passages: list[str], strong: Writer | None = None,
        **settings: Any) -> tuple[ChatResult, list[ChatEvent], Turn]:
    s = Settings(home=tmp_path, **settings)
    turn = Turn(ChatRequest(query=question, mode="kb", kb="kb", save=False), s, llm, None,  # type: ignore[arg-type]
                PromptStore(tmp_path / "prompts"))
    turn.strong = strong
    hits = [Hit(i, i, f"doc{i}.md", text, 0.5) for i, text in enumerate(passages, 1)]

    async def run() -> list[ChatEvent]:
        return [event async for event in kb_chat.answer_hits(turn, hits, "kb")]

    events = asyncio.run(run())
    return ChatResult.from_events(events), events, turn


def deltas(events: list[ChatEvent]) -> list[dict[str, Any]]:
    return [e.data for e in events if e.type == "delta"]


def test_a_checked_answer_streams_in_several_events_with_its_citation(tmp_path: Path) -> None:
    llm = Writer("Ferries leave the harbour at 9 am and 4 pm every day.")
    result, events, turn = ask(tmp_path, llm, "When do ferries leave the harbour?", HARBOUR)
    assert len(deltas(events)) > 3  # streamed as written, not held back until checked
    assert deltas(events)[0]["text"] == "Ferrie"  # it cannot open a refusal: shown from its first characters
    _, events, _ = ask(tmp_path, Writer("2018年全年营业收入为35亿元。"), "2018年公司全年营业收入是多少？", REPORTS)
    assert deltas(events)[0]["text"] == "2018年全"  # likewise in Chinese (six characters from a digit)
    _, events, _ = ask(tmp_path, Writer("营业收入为35亿元。"), "2018年公司全年营业收入是多少？", REPORTS)
    assert deltas(events)[0]["text"] == "营业收"  # two Chinese characters are enough to tell
    assert result.answer == "Ferries leave the harbour at 9 am and 4 pm every day [1]."
    assert turn.check is not None and turn.check.passes(0.35, 0.0)
    assert [(s.index, s.role) for s in sources_from(result.sources)][0] == (1, "cited")
    # the prompt holds the refusal text of the question's language and the evidence, not the café's chunk
    system, user = llm.prompts[0][0]["content"], llm.prompts[0][-1]["content"]
    assert questions.REFUSAL["en"] in system and "café" not in user and "9 am and 4 pm" in user


def test_a_refuted_answer_gets_a_visible_correction_and_becomes_the_refusal(tmp_path: Path) -> None:
    # copied from a same-topic distractor: the café's hours for a ferry question
    result, events, turn = ask(tmp_path, Writer("The ferry leaves at 8 am."), "When does the ferry leave?",
                               HARBOUR[2:])
    correction = deltas(events)[-1]
    assert correction["replace"] == questions.REFUSAL["en"] and "Correction" in correction["text"]
    assert result.answer == questions.REFUSAL["en"] and turn.finish_reason == "no_answer"
    assert all(s.role == "searched" for s in sources_from(result.sources))


def test_a_models_own_refusal_comes_out_as_the_one_refusal_text(tmp_path: Path) -> None:
    result, events, turn = ask(tmp_path, Writer("无法回答。"), "公司食堂几点开门？", REPORTS)
    assert [d["text"] for d in deltas(events)] == [questions.REFUSAL["zh"]]  # nothing of the model's wording
    assert turn.finish_reason == "no_answer"
    result, _, _ = ask(tmp_path, Writer("I don't know."), "When does the museum open?", HARBOUR,
                       no_answer_reply="Not in the documents.")
    assert result.answer == "Not in the documents."  # a configured text replaces both languages' texts


def test_a_question_whose_year_no_passage_holds_is_refused_without_the_model(tmp_path: Path) -> None:
    llm = Writer("2019年全年营业收入为35亿元。")
    result, events, turn = ask(tmp_path, llm, "2019年公司全年营业收入是多少？", REPORTS)
    assert llm.prompts == [] and result.answer == questions.REFUSAL["zh"]
    assert turn.check is not None and turn.check.unmet == ["2019"]
    result, _, _ = ask(tmp_path, Writer("2018年全年营业收入为35亿元。"), "2018年公司全年营业收入是多少？", REPORTS)
    assert result.answer.startswith("2018年全年营业收入为35亿元[1]"), result.answer


def test_a_partial_answer_says_what_is_not_covered_and_is_no_refusal(tmp_path: Path) -> None:
    answer = "The lighthouse was built in 1871. The documents do not say who built it."
    result, _, turn = ask(tmp_path, Writer(answer), "When was the lighthouse built and who built it?", HARBOUR)
    assert not is_refusal(result.answer) and "1871 [" in result.answer and "do not say who built it" in result.answer
    assert statements(result.answer) == ["The lighthouse was built in 1871 [1]."]


def test_balanced_escalates_an_unconfirmed_answer_and_a_multi_part_question(tmp_path: Path) -> None:
    weak, strong = Writer("The ferry leaves at 8 am."), Writer("Ferries leave at 9 am and 4 pm.", "strong")
    result, events, turn = ask(tmp_path, weak, "When do ferries leave the harbour?", HARBOUR, strong)
    assert len(weak.prompts) == 1 and len(strong.prompts) == 1
    assert result.answer == "Ferries leave at 9 am and 4 pm [1]." and turn.answered_by == "strong"
    assert any(d.get("replace") == "" for d in deltas(events))  # the weak answer is withdrawn visibly
    # a question of two parts goes to the stronger pack at once
    weak, strong = Writer("x"), Writer("Ferries leave at 9 am and 4 pm; the crossing takes forty minutes.")
    result, _, _ = ask(tmp_path, weak, "When do ferries leave and how long does the crossing take?", HARBOUR, strong)
    assert weak.prompts == [] and "forty minutes" in result.answer
    # fast: the default model only, and a refusal where it is refuted
    weak, strong = Writer("The ferry leaves at 8 am."), Writer("Ferries leave at 9 am.")
    result, _, _ = ask(tmp_path, weak, "When do ferries leave the harbour?", HARBOUR, strong, answer_quality="fast")
    assert strong.prompts == [] and result.answer == questions.REFUSAL["en"]


def test_balanced_asks_the_stronger_pack_about_a_weakly_anchored_answer_that_fast_keeps(tmp_path: Path) -> None:
    """An answer whose sentence holds half the question's terms (a same-topic copy as often as a right answer)
    stands with fast; with balanced the stronger pack settles it (escalation.CONFIRM_ANCHOR)."""
    from zhiku.chat import answer_check, escalation

    question = "When does the island ferry leave the harbour?"
    passages = ["The island ferry crossing takes forty minutes.", "Boats leave the harbour at 7 am on Sundays."]
    answer = "Boats leave the harbour at 7 am."
    assert 0.35 <= answer_check.anchoring(answer, question, passages) < escalation.CONFIRM_ANCHOR
    weak, strong = Writer(answer), Writer("The documents do not answer this question.", "strong")
    result, _, turn = ask(tmp_path, weak, question, passages, strong)
    assert len(strong.prompts) == 1 and result.answer == questions.REFUSAL["en"]
    weak, strong = Writer(answer), Writer("unused", "strong")
    result, _, _ = ask(tmp_path, weak, question, passages, strong, answer_quality="fast")
    assert strong.prompts == [] and result.answer.startswith("Boats leave the harbour at 7 am")


def test_citations_are_added_where_statements_end() -> None:
    citer = Citer(["The Moon orbits the Earth once every 27.3 days.", "食堂每天早上七点开门。"], [1, 2], "")
    out = citer.feed("The Moon orbits once every 27.3 days. 食堂早上七点开门。") + citer.close()
    assert out == "The Moon orbits once every 27.3 days [1]. 食堂早上七点开门[2]。"
    citer = Citer(["Steps: open the lid, pour the water."], [3], "How do I fill it?")
    assert citer.feed("1. Open the lid\n2. Pour the water [3]\n") + citer.close() == \
        "1. Open the lid [3]\n2. Pour the water [3]\n"


def test_evidence_keeps_the_sentences_about_the_question() -> None:
    chunk = ("The harbour has two piers. Ferries to the island leave at 9 am and 4 pm. Tickets are sold on board. "
             "The pier was rebuilt in 1990. Fishing boats land their catch at dawn. The fish market opens at 6 am.")
    chosen = evidence.select("When do ferries to the island leave?", [chunk, "Tea and cake at the café."])
    assert [e.hit for e in chosen] == [0]  # the café has nothing about the question
    assert "9 am and 4 pm" in chosen[0].text and "fish market" not in chosen[0].text
    assert len(chosen[0].text) < len(chunk) * 0.6


def test_evidence_of_a_list_question_keeps_the_whole_list() -> None:
    """The items of a list rarely repeat the question's words: the list after the sentence naming it stays whole."""
    chunk = ("## Commands\nzhiku kb supports these commands:\n- create: a new base\n- add: files or folders\n"
             "- list: every base\n- show: one base\n- search: the best chunks\n- sync: a folder again\n"
             "- remove: documents\n- rebuild: every vector\n- embed: the waiting chunks\n- delete: a base\n"
             "The web UI has the same actions.")
    text = evidence.select("Which commands does zhiku kb support?", [chunk], "list")[0].text
    for command in ("create", "add", "search", "rebuild", "embed", "delete"):
        assert f"- {command}:" in text
    assert "web UI" not in text


def test_question_kinds_and_constraints() -> None:
    assert questions.kind("A 和 B 分别是多少？", "zh") == "multi"
    assert questions.kind("What is the default port and how do I change it?", "en") == "multi"
    assert questions.kind("Which formats are supported?", "en") == "list"
    assert questions.kind("支持哪些数据库？", "zh") == "list"
    assert questions.kind("How do I install zhiku?", "en") == "howto"
    assert questions.kind("When was the lighthouse built?", "en") == "factoid"
    assert constraints.constraints("What did Tesla earn in 2022, version v3.5?") >= {"tesla", "2022", "3.5"}
    assert constraints.unmet("Who won the 1998 final?", ["The 1994 final was won by Brazil."]) == ["1998"]
    assert constraints.unmet("How many staff did it have in 2018?", ["In 2018 it had 1,200 staff."]) == []


def test_every_interface_shows_a_correction(tmp_path: Path) -> None:
    """A refuted answer as each interface gives it: streamed, the answer and then the visible note; whole (/v1
    without stream, Chatchat without stream), the corrected answer alone."""
    from zhiku.server.chatchat.service import qa_objects
    from zhiku.server.openai_api import _kb_deltas

    _, events, _ = ask(tmp_path, Writer("The ferry leaves at 8 am."), "When does the ferry leave?", HARBOUR[2:])

    class Chat:
        def stream(self, request: ChatRequest) -> AsyncIterator[ChatEvent]:
            async def gen() -> AsyncIterator[ChatEvent]:
                for e in [*events, ChatEvent("done", {"usage": {}})]:
                    yield e
            return gen()

    class Services:
        chat = Chat()

    async def texts(whole: bool) -> list[str]:
        return [d.text async for d in _kb_deltas(Services(), None, [], whole=whole)  # type: ignore[arg-type]
                if d.text]

    streamed = asyncio.run(texts(False))
    assert "".join(streamed).startswith("The ferry leaves at 8 am") and "Correction" in streamed[-1]
    assert asyncio.run(texts(True)) == [questions.REFUSAL["en"]]

    async def chatchat(stream: bool) -> list[dict[str, Any]]:
        async def docs(_: Any) -> list[str]:
            return []
        return [o async for o in qa_objects(Services.chat.stream(None), stream, docs, [])]  # type: ignore[arg-type]

    assert asyncio.run(chatchat(False))[0]["answer"] == questions.REFUSAL["en"]
    assert "Correction" in "".join(o.get("answer", "") for o in asyncio.run(chatchat(True)))


def test_a_refusal_worded_late_becomes_the_one_refusal_text(tmp_path: Path) -> None:
    words = "Based on the documents provided, the opening hours of the museum are not mentioned."
    result, events, turn = ask(tmp_path, Writer(words), "When does the museum open?", HARBOUR)
    assert result.answer == questions.REFUSAL["en"] and turn.finish_reason == "no_answer"
    assert deltas(events)[-1] == {"text": "", "replace": questions.REFUSAL["en"]}


def test_constraints_are_looked_for_where_the_answer_was_taken_from() -> None:
    from zhiku.chat.answer_check import judge

    passage = ("In 2019 the museum opened a new wing. It holds maps. The maps are old. Visitors like them. "
               "The shop sells postcards. The garden has roses. In 2021 the café moved to the harbour.")
    # the year is in the passage, but not near the sentence the answer comes from
    assert judge("The café moved to the harbour.", "Where did the café move in 2019?", [passage]).unmet == ["2019"]
    assert judge("The café moved to the harbour.", "Where did the café move in 2021?", [passage]).unmet == []
    # a question about a place no passage names (one name swapped for another) is not answered from them
    assert constraints.unmet("When do ferries to Glazing leave?", HARBOUR) == ["glazing"]


def test_an_invented_step_sends_the_answer_to_the_stronger_pack(tmp_path: Path) -> None:
    steps = ["To fill the kettle, open the lid and pour in cold water up to the line."]
    padded = "1. Open the lid.\n2. Pour in cold water up to the line.\n3. Call the manufacturer's hotline for a check.\n"
    weak, strong = Writer(padded), Writer("Open the lid and pour in cold water up to the line.")
    result, _, turn = ask(tmp_path, weak, "How do I fill the kettle?", steps, strong)
    assert turn.check is not None and turn.answered_by == "strong" and "hotline" not in result.answer
    # with nobody stronger to ask the answer stands (an unsupported statement alone does not refute it)
    result, _, turn = ask(tmp_path, Writer(padded), "How do I fill the kettle?", steps)
    assert "hotline" in result.answer and turn.check is not None
    assert turn.check.unsupported == ["Call the manufacturer's hotline for a check."]


def test_citations_stay_out_of_code_blocks() -> None:
    """A [n] inside a fenced block would break the command a user copies (and the fence's language tag)."""
    passage = ("```bash\n.venv/bin/zhiku kb create handbook --description team\n"
               ".venv/bin/zhiku kb add handbook ~/docs/handbook.pdf ~/docs/notes/\n```")
    answer = ("Use the add command:\n\n```bash\n.venv/bin/zhiku kb add handbook ~/docs/handbook.pdf ~/docs/notes/\n"
              "```\n\nThe command adds the files to the knowledge base handbook.")
    citer = Citer([passage], [1], "How do I add files to a knowledge base?")
    out = "".join(citer.feed(ch) for ch in answer) + citer.close()
    code = out.split("```")[1]
    assert code == "bash\n.venv/bin/zhiku kb add handbook ~/docs/handbook.pdf ~/docs/notes/\n"
    assert out.endswith("knowledge base handbook [1].")
