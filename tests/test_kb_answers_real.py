"""Knowledge-base answers from real models through the product's path (kb_chat.answer_hits): the sources an
answer rests on, none shown as support under a refusal, the answer check turning an answer from
distractors into the one refusal text, a two-part answer that keeps both parts, and a checked answer that
streams in several events.

The answer behaviours are pinned with qwen2.5-coder-0.5b, the default pack (`make test` pulls it); the
135M test model shows the citations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from zhiku import packs
from zhiku.chat import kb_chat, questions
from zhiku.chat.citations import cited_numbers
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


def test_an_answer_is_cited_to_the_passage_that_holds_it(smollm: tuple[Settings, LLMService],
                                                         tmp_path: Path) -> None:
    answer, sources = ask(smollm, tmp_path, "How often does the Moon orbit the Earth?", hits("paint", "moon"))
    assert "27.3" in answer, answer
    # only the moon passage bears on the question (chat/evidence.py): it alone is in the prompt, and supports
    assert [(s.document, s.role) for s in sources] == [("moon.md", "cited")]
    assert cited_numbers(answer) == [1], answer
    answer, sources = ask(smollm, tmp_path, "What colours is the lighthouse painted?", hits("keeper", "paint"))
    assert "red and white" in answer, answer
    assert sources[0].document == "paint.md" and sources[0].role in ("cited", "attributed")
    assert all(s.role == "searched" for s in sources[1:])


def ask_checked(model: tuple[Settings, LLMService], tmp_path: Path, question: str,
                passages: list[Hit]) -> tuple[ChatResult, int]:
    """As a user asks: the product's settings, so the answer check (on by default) decides; with the number
    of answer events that came."""
    settings, llm = model
    turn = Turn(ChatRequest(query=question, mode="kb", kb="kb", save=False, temperature=0.0, max_tokens=96),
                settings, llm, None, PromptStore(tmp_path / "prompts"))  # type: ignore[arg-type]

    async def run() -> tuple[ChatResult, int]:
        result, deltas = ChatResult(), 0
        async for event in kb_chat.answer_hits(turn, passages, "kb"):
            deltas += event.type == "delta"
            result.add(event)
        return result, deltas

    return asyncio.run(run())


def test_the_answer_check_refuses_under_distractors_only(smollm: tuple[Settings, LLMService],
                                                         tmp_path: Path) -> None:
    result, _ = ask_checked(smollm, tmp_path, "What is the capital of Mongolia?", hits("bread", "chess"))
    assert result.answer == questions.REFUSAL["en"]
    assert [s["role"] for s in result.sources] == ["searched", "searched"]


def test_under_distractors_only_the_default_pack_gives_the_one_refusal_text(qwen: tuple[Settings, LLMService],
                                                                           tmp_path: Path) -> None:
    # a staff handbook without the parking fee (the question a looser prompt once answered from the canteen)
    passages = [Hit(i, i, f"handbook-{i}.md", text, 0.5) for i, text in enumerate(HANDBOOK, 1)]
    result, _ = ask_checked(qwen, tmp_path, "公司停车场每月收费多少？", passages)
    assert result.answer == questions.REFUSAL["zh"], result.answer
    assert all(s["role"] == "searched" for s in result.sources)


LICENCE = ["本项目的代码采用 Apache-2.0 许可证发布，文档采用 CC BY 4.0 许可证发布。商业使用不需要额外授权。",
           "默认端口是 8000，可以在 zhiku.toml 中设置 port 来修改。"]


def test_a_two_part_answer_keeps_both_parts(qwen: tuple[Settings, LLMService], tmp_path: Path) -> None:
    passages = [Hit(i, i, "README.md", text, 0.5) for i, text in enumerate(LICENCE, 1)]
    result, _ = ask_checked(qwen, tmp_path, "代码和文档分别采用什么许可证？", passages)
    assert "Apache-2.0" in result.answer and "CC BY 4.0" in result.answer, result.answer
    assert "[1]" in result.answer and result.sources[0]["role"] == "cited"


def test_a_checked_answer_streams_in_several_events(qwen: tuple[Settings, LLMService], tmp_path: Path) -> None:
    passages = [Hit(1, 1, "handbook.md", "Safety. The emergency shower in lab B is tested every Monday by the lab "
                                         "manager, Ana Costa. Eye-wash stations are checked monthly.", 0.5)]
    result, deltas = ask_checked(qwen, tmp_path, "Who tests the emergency shower?", passages)
    assert "Ana Costa" in result.answer, result.answer
    assert deltas > 2  # as the model writes it, not held back until checked
