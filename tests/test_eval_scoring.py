"""The `right` verdict (eval/scoring.py) on concrete reply/reference pairs: short answers against longer
references, whole numbers, list references, every part of a multi-part answer, hedging between candidates,
and citations to a passage that holds the answer."""

from __future__ import annotations

import pytest

from zhiku.eval.datasets import CorpusItem, Dataset, Question
from zhiku.eval.rescore import fill, rescore
from zhiku.eval.scoring import Pool, cite_ok, holds, judge

BOWL = ["Denver Broncos", "Carolina Panthers", "Levi's Stadium", "Santa Clara", "February 7, 2016"]
WHO_WON = "Which team won Super Bowl 50?"


@pytest.mark.parametrize(("reply", "reference", "language", "expected"), [
    ("14", "14个", "zh", True),  # the reference's measure word is not needed
    ("她共获得14个世界冠军。", "14个", "zh", True),
    ("70.99", "70.99平方公里", "zh", True),
    ("14万", "14万人", "zh", True),
    ("14", "14万", "zh", False),  # a magnitude is never dropped
    ("14名", "14个", "zh", False),  # the number with another unit
    ("140个", "14个", "zh", False),  # not inside a longer number
    ("2014年", "14", "zh", False),
    ("16.4%", "6.4%", "zh", False),
    ("Denmark, Iceland, Norway", "Denmark, Iceland and Norway", "en", True),  # a list in another form
    ("Denmark and Iceland", "Denmark, Iceland and Norway", "en", False),  # an item missing
    ("小提琴、钢琴", "小提琴及钢琴", "zh", True),
    ("The Denver Broncos [1].", "Denver Broncos", "en", True),
    ("In 2014.", "14", "en", False),
])
def test_holds(reply: str, reference: str, language: str, expected: bool) -> None:
    assert holds(reply, reference, language) is expected


@pytest.mark.parametrize(("reply", "right"), [
    ("The Denver Broncos won, beating the Carolina Panthers.", True),  # one rival as detail
    ("Denver Broncos", True),
    ("Denver Broncos or Carolina Panthers", False),  # two options: the reader cannot tell
    ("Denver Broncos, Carolina Panthers, Levi's Stadium", False),
    ("It was played at Levi's Stadium in Santa Clara; the Denver Broncos beat the Carolina Panthers.", False),
    ("Carolina Panthers", False),
])
def test_hedging_between_candidates(reply: str, right: bool) -> None:
    assert judge(reply, [["Denver Broncos"]], "en", WHO_WON, BOWL).right is right


def test_a_rival_in_the_question_does_not_compete() -> None:
    v = judge("The Broncos beat the Carolina Panthers: Denver Broncos.", [["Denver Broncos"]], "en",
              "Who beat the Carolina Panthers?", BOWL)
    assert v.right and v.competing == ()


def test_chinese_options_are_hedging() -> None:
    candidates = ["20个", "9个", "1993年"]
    assert not judge("14个、20个、9个", [["14个"]], "zh", "她共获得多少个冠军？", candidates).right
    assert not judge("可能是14个，也可能是20个或者9个", [["14个"]], "zh", "多少个冠军？", candidates).right
    assert judge("至1993年她共获得14个世界冠军。", [["14个"]], "zh", "多少个冠军？", candidates).right


def test_every_part_must_be_present() -> None:
    parts = [["1313851", "131万"], ["187万", "186.35万"]]
    both = judge("特斯拉交付131万辆，比亚迪交付186.35万辆。", parts, "zh")
    one = judge("特斯拉交付131万辆。", parts, "zh")
    assert both.right and both.parts_found == 1.0
    assert not one.right and one.parts_found == 0.5


def test_cite_ok_needs_a_cited_passage_holding_each_part() -> None:
    passages = ["特斯拉2022年交付131万辆。", "比亚迪2022年销量186.35万辆。"]
    parts = [["131万"], ["186.35万"]]
    assert cite_ok("特斯拉131万辆[1]，比亚迪186.35万辆[2]。", parts, passages, "zh")
    assert not cite_ok("特斯拉131万辆[1]，比亚迪186.35万辆[1]。", parts, passages, "zh")  # [1] lacks part 2
    assert not cite_ok("特斯拉131万辆，比亚迪186.35万辆。", parts, passages, "zh")  # no citation
    assert not cite_ok("特斯拉131万辆[3]。", [["131万"]], passages, "zh")  # no passage 3
    # the prompt numbered only the second passage, as [1]
    assert cite_ok("比亚迪186.35万辆[1]。", [["186.35万"]], passages, "zh", {"1": 1})
    assert not cite_ok("特斯拉131万辆[1]。", [["131万"]], passages, "zh", {"1": 1})


def test_pool_finds_the_candidates_in_the_prompt() -> None:
    pool = Pool(BOWL + ["Seattle", "x"], "en")
    found = pool.candidates_in(["The Denver Broncos beat the Carolina Panthers at Levi's Stadium."])
    assert found == ["Denver Broncos", "Carolina Panthers", "Levi's Stadium"]


def test_a_logged_row_is_judged_again_and_an_old_log_gets_its_references() -> None:
    passage = "叶乔波至1993年春季赛事结束，共获得14个世界冠军，其中9个是短距离冠军。"
    ds = Dataset("t", "zh", [CorpusItem("p", "叶乔波", passage)],
                 [Question("q1", "她共获得多少个世界冠军？", ["14个"], ["p"]),
                  Question("q2", "其中短距离冠军有几个？", ["9个"], ["p"])])
    old = {"id": "q1", "context": "retrieved", "reply": "14 [1]", "refusal": 0.0, "passages": [passage],
           "question": "她共获得多少个世界冠军？"}
    [row] = fill([old], ds)
    assert row["parts"] == [["14个"]] and row["candidates"] == ["14个", "9个"]
    assert row["right"] == 1.0 and row["cite_ok"] == 1.0
    hedge = rescore({**row, "reply": "14个或9个"})
    assert hedge["right"] == 0.0 and hedge["hedged"] == 1.0
    negative = rescore({**row, "context": "counterfactual", "reply": "根据已知信息无法回答该问题。"})
    assert negative["right"] == 1.0
