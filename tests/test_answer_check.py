"""The answer check (chat/answer_check.py): the decision logic with a scripted model that reports a chosen
P(yes), and the log-probability probe of the batching engine with the real smollm2-135m.

The scripted model stands in because the decision must be forced both ways on the same answer; the real
models' check is measured by `zhiku eval answers` (README, "Answer quality") and pinned in
test_kb_answers_real.py.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from conftest import ScriptedModel
from zhiku.chat import answer_check, kb_chat
from zhiku.chat.prompts import PromptStore
from zhiku.chat.sources import sources_from
from zhiku.chat.turn import Turn
from zhiku.chat.types import ChatRequest, ChatResult
from zhiku.config import Settings
from zhiku.eval.answer_summary import check_curve, checked
from zhiku.kb.types import Hit
from zhiku.llm.base import ChatDelta, GenerationParams, Usage
from zhiku.llm.service import LLMService

NO_ANSWER = "Not in the knowledge base."
PASSAGES = ["Ferries to the island leave the harbour at 9 am and 4 pm every day.",
            "The Saltmarsh lighthouse was built in 1871."]


class Checked(ScriptedModel):
    """Answers `answer`; asked the check, reports P(yes) = `p_yes` through first-token log-probabilities."""

    def __init__(self, answer: str, p_yes: float | None) -> None:
        self.answer, self.p_yes = answer, p_yes
        self.calls: list[list[dict[str, Any]]] = []

    async def chat(self, messages: list[dict[str, Any]], params: GenerationParams,
                   model: str | None = None) -> AsyncIterator[ChatDelta]:
        self.calls.append(messages)
        if not params.logprobs_of:
            for word in self.answer.split(" "):
                yield ChatDelta(text=word + " ")
            yield ChatDelta(finish_reason="stop", usage=Usage(20, 3))
            return
        if self.p_yes is None:  # a backend without log-probabilities: the sampled word decides
            yield ChatDelta(text="no")
            yield ChatDelta(finish_reason="length", usage=Usage(30, 1))
            return
        logprobs = {w: -30.0 for w in params.logprobs_of}
        logprobs["yes"], logprobs["no"] = math.log(self.p_yes), math.log(1 - self.p_yes)
        yield ChatDelta(text="yes" if self.p_yes >= 0.5 else "no")
        yield ChatDelta(finish_reason="length", usage=Usage(30, 1), logprobs=logprobs)


def ask(tmp_path: Path, llm: Checked, check: bool = True, min_p: float = 0.4,
        question: str = "When do ferries leave?") -> tuple[Turn, ChatResult]:
    settings = Settings(home=tmp_path, answer_check=check, answer_check_p=min_p, no_answer_reply=NO_ANSWER,
                        answer_evidence=False)  # both passages in the prompt, as written
    turn = Turn(ChatRequest(query=question, mode="kb", kb="kb", save=False), settings,
                llm, None, PromptStore(tmp_path / "prompts"))  # type: ignore[arg-type]
    hits = [Hit(i, i, f"doc{i}.md", text, 0.5) for i, text in enumerate(PASSAGES, 1)]

    async def run() -> ChatResult:
        result = ChatResult()
        async for event in kb_chat.answer_hits(turn, hits, "kb"):
            result.add(event)
        return result

    return turn, asyncio.run(run())


def test_an_answer_the_model_does_not_confirm_becomes_the_no_answer_reply(tmp_path: Path) -> None:
    llm = Checked("9 am and 4 pm", p_yes=0.2)
    turn, result = ask(tmp_path, llm)
    assert result.answer == NO_ANSWER
    check = turn.check
    assert check is not None and check.p_yes is not None and abs(check.p_yes - 0.2) < 1e-6
    assert check.anchor == 1.0 and check.answer.startswith("9 am and 4 pm")  # well anchored: the model decided
    assert turn.finish_reason == "no_answer"
    # the passage that holds "9 am" is only searched: nothing is shown as support under the refusal
    assert [s.role for s in sources_from(result.sources)] == ["searched", "searched"]
    # the check continues the answer's own conversation: same messages, then the answer, then the question
    answer_messages, check_messages = llm.calls
    assert check_messages[:len(answer_messages)] == answer_messages
    assert check_messages[-2]["role"] == "assistant" and check_messages[-2]["content"].startswith("9 am and 4 pm")
    assert check_messages[-1]["content"] == answer_check.QUESTION["en"]


def test_an_answer_from_a_sentence_that_does_not_restate_the_question_is_refused(tmp_path: Path) -> None:
    llm = Checked("1871", p_yes=0.9)
    turn, result = ask(tmp_path, llm, min_p=0.0)  # the default: anchoring only, the model is not asked
    assert result.answer == NO_ANSWER and len(llm.calls) == 1
    assert turn.check is not None and turn.check.anchor == 0.0 and turn.check.p_yes is None
    turn, result = ask(tmp_path, Checked("1871", p_yes=0.9), min_p=0.0, question="When was the lighthouse built?")
    # the answer is kept, with the passage that holds it cited (chat/answer_stream.py adds the [n])
    assert result.answer.strip() == "1871 [2]" and turn.check is not None and turn.check.anchor == 1.0
    assert [(s.index, s.role) for s in sources_from(result.sources)] == [(2, "cited"), (1, "searched")]


def test_a_confirmed_answer_is_kept_with_its_support(tmp_path: Path) -> None:
    turn, result = ask(tmp_path, Checked("9 am and 4 pm", p_yes=0.7))
    assert result.answer.strip() == "9 am and 4 pm [1]"
    assert [(s.index, s.role) for s in sources_from(result.sources)] == [(1, "cited"), (2, "searched")]
    turn, result = ask(tmp_path, Checked("9 am and 4 pm", p_yes=0.2), check=False)  # the knob off: no check
    assert result.answer.strip() == "9 am and 4 pm [1]" and turn.check is None


def test_a_refusal_is_not_checked_and_a_backend_without_logprobs_is_read_from_its_word(tmp_path: Path) -> None:
    llm = Checked("I don't know", p_yes=0.9)
    turn, result = ask(tmp_path, llm)
    assert turn.check is None and len(llm.calls) == 1 and result.answer == NO_ANSWER  # the one refusal text
    turn, result = ask(tmp_path, Checked("9 am and 4 pm", p_yes=None))
    assert turn.check is not None and turn.check.p_yes == 0.0 and result.answer == NO_ANSWER


def test_p_yes_sums_spellings_and_the_summary_applies_a_threshold() -> None:
    assert abs(answer_check.p_yes({"yes": math.log(0.3), "Yes": math.log(0.3), "no": math.log(0.4)}) - 0.6) < 1e-9
    assert answer_check.p_yes({}) == 0.5
    rows = [{"id": "a", "context": "gold", "gold_in_context": True, "check_p": 0.6, "refusal": 0.0, "em": 1.0,
             "f1": 1.0, "contains": 1.0, "right": 1.0, "cites": 0.0, "supported": 1.0, "support_ok": 1.0},
            {"id": "a", "context": "negative", "gold_in_context": False, "check_p": 0.3, "refusal": 0.0, "em": 0.0,
             "f1": 0.0, "contains": 0.0, "right": 0.0, "cites": 0.0, "supported": 1.0, "support_ok": 0.0}]
    out = checked(rows, (0.0, 0.5))
    assert [r["refusal"] for r in out] == [0.0, 1.0] and out[1]["supported"] == 0.0
    curve = {p["threshold"]: p for p in check_curve(rows) if p["signal"] == "p_yes"}
    assert curve[0.0]["rejection"] == 0.0 and curve[0.5]["rejection"] == 1.0 and curve[0.5]["false_refusal"] == 0.0
    assert curve[0.7]["false_refusal"] == 1.0 and curve[0.7]["gold_contains"] == 0.0
    assert curve[0.5]["correct_lost"] == 0.0 and curve[0.7]["correct_lost"] == 1.0


def test_anchoring_is_high_where_the_answer_sits_among_the_questions_words() -> None:
    question = "When do ferries leave the harbour?"
    passages = ["The museum opens at 9 am. Tickets cost five pounds.",
                "Ferries to the island leave the harbour at 9 am and 4 pm every day."]
    assert answer_check.anchoring("9 am and 4 pm", question, passages) == 1.0
    assert answer_check.anchoring("9 am", question, passages[:1]) == 0.0
    assert answer_check.anchoring("never", question, passages) == 0.0


def test_a_sentence_answer_is_anchored_by_what_it_takes_from_the_passages_not_its_wording() -> None:
    """Read in dev replies: "Based on the information provided ..., the series ... was Happy Days" was refused
    because its own wording is in no passage; an invented figure or name is still not anchored."""
    question = "What ABC series originated as a short segment on Love, American Style?"
    passages = ["Happy Days originated as a short segment on the anthology series Love, American Style in 1972.",
                "ABC also aired Laverne & Shirley, a spin-off."]
    wordy = ("Based on the information provided in the documents, the ABC series that originated as a short "
             "segment on Love, American Style was Happy Days [1].")
    assert answer_check.anchoring(wordy, question, passages) >= 0.35
    assert answer_check.anchoring("It was introduced as Happy Days in 1975.", question, passages) == 0.0  # 1975
    assert answer_check.anchoring("The series was Mork Hopkins.", question, passages) == 0.0  # an invented name
    ferries = "Ferries to the island leave the harbour at 9 am and 4 pm every day."
    assert answer_check.anchoring("The ferry leaves at 8 am.", "When do ferries leave the harbour?", [ferries]) == 0.0


def test_a_chinese_sentence_answer_is_anchored_by_what_it_adds_to_the_question() -> None:
    """Read in CMRC dev replies: "根据资料，" and the question restated around the answer (英国的摄政时期是|珍·奥斯汀|
    作品的创作背景: the pairs 期珍, 汀作 are in no passage) made right answers fail; an invented name still does."""
    question = "英国的摄政时期是哪位著名作家作品的创作背景？"
    passages = ["摄政时期的英国社会是简·奥斯汀等作家作品的创作背景，这一时期的建筑也很有名。"]
    assert answer_check.anchoring("根据资料，英国的摄政时期是简·奥斯汀作品的创作背景[1]。", question, passages) >= 0.5
    assert answer_check.anchoring("英国的摄政时期是狄更斯作品的创作背景。", question, passages) == 0.0
    assert answer_check.anchoring("根据资料，华堡是汉堡王的招牌食品。", "华堡是哪个品牌的招牌食品？",
                                  ["华堡是汉堡王的招牌食品，1957年推出。"]) >= 0.55


def test_a_question_in_another_language_than_the_passages_is_anchored_by_its_latin_words() -> None:
    """A Chinese question about an English document shares no Chinese term with it: the answer is judged by
    the Latin words and numbers they share, not refused for the missing Chinese ones."""
    passages = ["The default chunk size is 500 characters; change it with zhiku kb create --chunk-size 800.",
                "Embedding runs in the background after a file is added."]
    question = "zhiku 默认的 chunk size 是多少？"
    assert answer_check.anchoring("默认的 chunk size 是 500 个字符[1]。", question, passages) == 1.0
    assert answer_check.anchoring("默认是 300 个字符。", question, passages) == 0.0
    assert answer_check.anchoring("默认是 500 个字符。", "默认的块大小是多少？", passages) == 1.0


def test_the_engine_reports_first_token_logprobs_without_changing_greedy_text(settings: Settings) -> None:
    llm = LLMService(settings.model_copy(update={"parallel": 1}))
    messages = [{"role": "user", "content": "Is the sky blue? Reply yes or no."}]

    async def run(params: GenerationParams) -> tuple[str, dict[str, float] | None]:
        text, logprobs = "", None
        async for d in llm.chat(messages, params):
            text += d.text
            logprobs = d.logprobs or logprobs
        return text, logprobs

    try:
        plain, none = asyncio.run(run(GenerationParams(max_tokens=8, temperature=0.0)))
        probed, logprobs = asyncio.run(run(GenerationParams(max_tokens=8, temperature=0.0,
                                                            logprobs_of=("yes", "Yes", "no", "No"))))
    finally:
        llm.close()
    assert none is None and probed == plain
    assert logprobs is not None and set(logprobs) == {"yes", "Yes", "no", "No"}
    assert all(v <= 0.0 for v in logprobs.values()) and sum(math.exp(v) for v in logprobs.values()) <= 1.0 + 1e-6
