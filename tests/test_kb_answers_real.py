"""Knowledge-base answers from real models through the product's path (kb_chat.answer_hits): the sources an
answer rests on, none shown as support under a refusal, and the answer check turning an answer from
distractors into a refusal.

smollm2-135m (the test model) never refuses, so the refusal is pinned with qwen2.5-coder-0.5b, the
smallest pack that does; `make test` pulls it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from zhiku import packs
from zhiku.chat import kb_chat
from zhiku.chat.citations import cited_numbers, is_refusal
from zhiku.chat.prompts import PromptStore
from zhiku.chat.sources import Source, sources_from
from zhiku.chat.turn import Turn
from zhiku.chat.types import ChatRequest, ChatResult
from zhiku.config import Settings
from zhiku.eval.answers import Options, answer_one
from zhiku.kb.types import Hit
from zhiku.llm.service import LLMService

PASSAGES = {
    "keeper": "The keeper of the Saltmarsh lighthouse is Oswin Fairweather. He has lived there since 1998.",
    "ferry": "Ferries to the island leave the harbour at 9 am and 4 pm every day.",
    "paint": "The Saltmarsh lighthouse was built in 1871 and is painted red and white.",
    "moon": "The Moon orbits the Earth once every 27.3 days.",
    "bread": "Sourdough bread needs a starter of flour and water, fed daily for a week.",
    "chess": "In chess, the bishop moves diagonally any number of squares.",
}

HANDBOOK = ["食堂每天早上七点开门，午餐供应到下午一点半。", "员工请年假需要提前三天在系统中提交申请。",
            "公司班车每天早上八点从地铁站出发。"]


def hits(*keys: str) -> list[Hit]:
    return [Hit(i, i, f"{k}.md", PASSAGES[k], 0.5) for i, k in enumerate(keys, 1)]


def llm_for(tmp_path: Path, models_dir: Path, model: str) -> Iterator[tuple[Settings, LLMService]]:
    settings = Settings(home=tmp_path, models_dir=models_dir, model=model, parallel=1, threads=2)
    llm = LLMService(settings)
    llm.start()
    try:
        yield settings, llm
    finally:
        llm.close()


@pytest.fixture
def smollm(tmp_path: Path, models_dir: Path, smollm_path: Path) -> Iterator[tuple[Settings, LLMService]]:
    yield from llm_for(tmp_path, models_dir, "smollm2-135m")


@pytest.fixture
def qwen(tmp_path: Path, models_dir: Path) -> Iterator[tuple[Settings, LLMService]]:
    if not packs.installed(models_dir, "qwen2.5-coder-0.5b"):
        pytest.skip("qwen2.5-coder-0.5b is not installed: `zhiku models pull qwen2.5-coder-0.5b` (make test does)")
    yield from llm_for(tmp_path, models_dir, "qwen2.5-coder-0.5b")


def ask(model: tuple[Settings, LLMService], tmp_path: Path, question: str, passages: list[Hit],
        prompt: str = "default") -> tuple[str, list[Source]]:
    settings, llm = model
    result, _ = asyncio.run(answer_one(settings, llm, None, PromptStore(tmp_path / "prompts"),  # type: ignore[arg-type]
                                       question, passages, Options(max_tokens=24, prompt=prompt)))
    return result.answer, sources_from(result.sources)


def test_an_answer_is_attributed_to_the_passage_that_holds_it(smollm: tuple[Settings, LLMService],
                                                                tmp_path: Path) -> None:
    answer, sources = ask(smollm, tmp_path, "How often does the Moon orbit the Earth?", hits("paint", "moon"))
    assert "27.3" in answer, answer
    # the moon passage (number 2 in the prompt) is listed first, as support; the other only as searched
    assert [(s.index, s.role) for s in sources] == [(2, "attributed"), (1, "searched")]


def test_a_bare_citation_is_parsed_but_not_taken_as_support(smollm: tuple[Settings, LLMService],
                                                             tmp_path: Path) -> None:
    answer, sources = ask(smollm, tmp_path, "When do ferries leave?", hits("keeper", "ferry"))
    assert cited_numbers(answer) == [2], answer  # "The answer is: [2] when." from this model
    # it cites the right passage but says nothing the question did not: no passage is shown as its support
    assert [(s.index, s.role) for s in sources] == [(1, "searched"), (2, "searched")]
    answer, sources = ask(smollm, tmp_path, "What colours is the lighthouse painted?", hits("keeper", "paint"))
    assert "red and white" in answer, answer
    assert [(s.index, s.role) for s in sources] == [(2, "attributed"), (1, "searched")]


def test_an_answer_no_passage_holds_has_no_supporting_source(smollm: tuple[Settings, LLMService],
                                                              tmp_path: Path) -> None:
    answer, sources = ask(smollm, tmp_path, "What is the capital of Mongolia?", hits("bread", "chess"))
    assert answer.strip()  # the 135M model answers anyway (from memory, or invented) ...
    assert all(s.role == "searched" for s in sources)  # ... but no passage is shown as its support


def test_a_refusal_under_distractors_only_shows_no_support(qwen: tuple[Settings, LLMService],
                                                           tmp_path: Path) -> None:
    # a staff handbook without the parking fee (the question a looser prompt once answered from the canteen)
    passages = [Hit(i, i, f"handbook-{i}.md", text, 0.5) for i, text in enumerate(HANDBOOK, 1)]
    answer, sources = ask(qwen, tmp_path, "公司停车场每月收费多少？", passages)
    assert is_refusal(answer), answer
    assert [(s.index, s.role) for s in sources] == [(1, "searched"), (2, "searched"), (3, "searched")]


def ask_checked(model: tuple[Settings, LLMService], tmp_path: Path, question: str,
                passages: list[Hit]) -> tuple[str, list[Source]]:
    """As a user asks: the product's settings, so the answer check (on by default) decides."""
    settings, llm = model
    turn = Turn(ChatRequest(query=question, mode="kb", kb="kb", save=False, temperature=0.0, max_tokens=24),
                settings, llm, None, PromptStore(tmp_path / "prompts"))  # type: ignore[arg-type]

    async def run() -> ChatResult:
        result = ChatResult()
        async for event in kb_chat.answer_hits(turn, passages, "kb"):
            result.add(event)
        return result

    result = asyncio.run(run())
    return result.answer, sources_from(result.sources)


def test_the_answer_check_refuses_under_distractors_only_and_keeps_a_supported_answer(
        smollm: tuple[Settings, LLMService], tmp_path: Path) -> None:
    settings = smollm[0]
    answer, _ = ask(smollm, tmp_path, "What is the capital of Mongolia?", hits("bread", "chess"))
    assert not is_refusal(answer, settings.no_answer_reply), answer  # unchecked, the 135M model answers anyway
    answer, sources = ask_checked(smollm, tmp_path, "What is the capital of Mongolia?", hits("bread", "chess"))
    assert answer == settings.no_answer_reply
    assert [s.role for s in sources] == ["searched", "searched"]
    answer, sources = ask_checked(smollm, tmp_path, "How often does the Moon orbit the Earth?", hits("paint", "moon"))
    assert "27.3" in answer, answer
    assert [(s.index, s.role) for s in sources] == [(2, "attributed"), (1, "searched")]
