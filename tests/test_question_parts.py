"""A question with several parts is searched once per part (chat/question_parts.py, kb_chat.retrieve), so each
part's passage reaches the prompt; a question with one part is searched as before."""

from __future__ import annotations

from pathlib import Path

from zhiku.chat import kb_chat
from zhiku.chat.question_parts import parts
from zhiku.config import Settings
from zhiku.kb.service import KBService


def test_parts_of_chinese_and_english_questions() -> None:
    assert parts("塔里木油田2021年和2022年的油气产量分别是多少？", "zh") == [
        "塔里木油田2021年的油气产量分别是多少？", "塔里木油田2022年的油气产量分别是多少？"]
    assert parts("2022年英特尔和英伟达全年营收", "zh") == ["2022年英特尔全年营收", "2022年英伟达全年营收"]
    assert parts("北京冬奥会澳大利亚和新西兰运动员数量", "zh") == ["北京冬奥会澳大利亚运动员数量",
                                                                  "北京冬奥会新西兰运动员数量"]
    # a clause without the first one's subject gets it; a conjunction between names wins over one between nouns
    assert parts("iPhone SE 3的芯片是什么，起售价多少", "zh") == ["iPhone SE 3的芯片是什么", "iPhone SE 3 起售价多少"]
    assert parts("分别有多少个国家和地区参加了北京冬奥会和杭州亚运会？", "zh")[1] == "分别有多少个国家和地区参加了杭州亚运会？"
    assert parts("What is the default chunk size and how do I change it?", "en") == [
        "What is the default chunk size", "how do I change it"]
    assert parts("Who tests the emergency shower? Also, when is the cutover window?", "en") == [
        "Who tests the emergency shower", "when is the cutover window"]
    for one in ("《七人乐队》的导演是谁？", "和平饭店在哪里？", "Which commands does zhiku kb support?",
                "What is the capital of Bosnia and Herzegovina?"):
        assert parts(one, "zh" if not one.isascii() else "en") == [one]


def test_each_part_of_a_question_brings_its_passage(home: Path, tmp_path: Path) -> None:
    """Five reports of one oil field, one per year: the whole question ranks the 2021 and 2022 reports among
    near-identical ones; searched by part, both are in the prompt, and a one-part question gets top_k."""
    folder = tmp_path / "docs"
    folder.mkdir()
    for year, output in ((2019, 3010), (2020, 3050), (2021, 3182), (2022, 3310), (2023, 3400)):
        (folder / f"report{year}.txt").write_text(
            f"塔里木油田{year}年年报。塔里木油田全年油气产量{output}万吨，同比增长。油田继续加大勘探力度。",
            encoding="utf-8")
    for n in range(6):
        (folder / f"other{n}.txt").write_text(f"塔里木油田第{n}号勘探区块的地质情况介绍，油气产量预计稳步增长。",
                                              encoding="utf-8")
    svc = KBService(Settings(home=home, embedder="use-m3", ui=False))
    try:
        svc.create("oil")
        svc.add_files("oil", [folder], wait=True)
        question = "塔里木油田2021年和2022年的油气产量分别是多少？"
        hits = kb_chat.retrieve(svc, "oil", question, "zh", top_k=2, score_threshold=0.0)
        text = " ".join(h.text for h in hits)
        assert "3182" in text and "3310" in text
        assert len(hits) == 3  # top_k plus one for the second part
        assert len({h.chunk_id for h in hits}) == len(hits)
        one = kb_chat.retrieve(svc, "oil", "塔里木油田2021年的油气产量是多少？", "zh", top_k=2, score_threshold=0.0)
        assert [h.chunk_id for h in one] == [h.chunk_id for h in svc.search("oil", "塔里木油田2021年的油气产量是多少？",
                                                                            top_k=2, score_threshold=0.0)]
    finally:
        svc.close()
