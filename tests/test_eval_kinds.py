"""Question kinds built from a single-span set (eval/kinds.py) and RGB's multi-part set (convert_rgb):
deterministic, and a counterfactual kept only when its change is real."""

from __future__ import annotations

import json
from pathlib import Path

from zhiku.eval import datasets
from zhiku.eval.datasets import CorpusItem, Dataset, Question
from zhiku.eval.kinds import counterfactual, derive, join, two_part

BOWL = ("Super Bowl 50 was played on February 7, 2016, at Levi's Stadium in Santa Clara. The Denver Broncos "
        "beat the Carolina Panthers 24-10. Peyton Manning led the Broncos.")
OTHER = "The Carolina Panthers were coached by Ron Rivera. Cam Newton was their quarterback."


def _set() -> Dataset:
    corpus = [CorpusItem("p1", "Super Bowl 50", BOWL), CorpusItem("p2", "Super Bowl 50", OTHER)]
    questions = [
        Question("a", "Which team won Super Bowl 50?", ["Denver Broncos"], ["p1"]),
        Question("b", "Where was the game played in 2016?", ["Levi's Stadium"], ["p1"]),
        Question("c", "Which team lost, the Broncos or the Panthers?", ["Carolina Panthers", "Panthers"], ["p1"]),
        Question("d", "Who was their coach?", ["Ron Rivera"], ["p2"]),
        Question("e", "Who led Cam Newton's team?", ["Ron Rivera"], ["p2"]),
    ]
    return Dataset("bowl", "en", corpus, questions)


def test_two_part_joins_two_questions_of_one_paragraph() -> None:
    ds = _set()
    made = two_part(ds, ds.questions, seed=0)
    assert [q.gold_ids for q in made] == [["p1"]]  # p2's two questions share their answer: no pair
    [q] = made
    assert q.kind == "two-part" and len(q.parts) == 2 and q.id.count("+") == 1
    first, second = q.id.split("+")
    by_id = {x.id: x for x in ds.questions}
    assert q.parts == [by_id[first].answers, by_id[second].answers]
    assert two_part(ds, ds.questions, seed=0)[0].id == q.id  # the same pair for the same seed


def test_join_reads_as_one_question() -> None:
    assert join("Who won?", "Where was it played?", "en") == "Who won? Also, where was it played?"
    assert join("Who won?", "Peyton Manning led whom?", "en") == "Who won? Also, Peyton Manning led whom?"
    assert join("谁赢了？", "在哪里举行？", "zh") == "谁赢了？另外，在哪里举行？"


def test_counterfactual_changes_a_constraint_the_paragraph_states() -> None:
    ds = _set()
    made = {q.id: q for q in counterfactual(ds, ds.questions, seed=3)}
    year = made["b~cf"]  # the year moves, to one the paragraph does not mention
    old, new = year.note.split(" -> ")
    assert old == "2016" and new != old and new not in BOWL and new in year.question
    assert year.answers == [] and year.gold_ids == ["p1"] and year.kind == "counterfactual"
    number = made["a~cf"]  # no year: the number 50 moves (Super Bowl 50 -> another)
    assert number.note.startswith("50 -> ") and "Super Bowl 50" not in number.question
    name = made["e~cf"]  # no number: a name of the same article the paragraph does not mention
    assert name.note.startswith("Cam Newton -> ")
    assert name.note.split(" -> ")[1] not in OTHER
    assert "d~cf" not in made  # nothing in the question to change
    assert [q.question for q in counterfactual(ds, ds.questions, seed=3)] == [q.question for q in made.values()]


def test_derive_single_keeps_the_questions() -> None:
    ds = _set()
    assert derive("single", ds, ds.questions) == ds.questions


def test_convert_rgb_keeps_every_part_and_document(tmp_path: Path) -> None:
    src = tmp_path / "zh_int.json"
    rows = [{"id": 0, "query": "2022年特斯拉和比亚迪交付量", "answer": [["1313851", "131万"], ["186.35万"]],
             "positive": [["特斯拉2022年交付131万辆。"], ["比亚迪2022年销量186.35万辆。", "特斯拉2022年交付131万辆。"]],
             "negative": ["2021年特斯拉交付93.6万辆。"]}]
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    ds = datasets.convert_rgb(src, tmp_path / "out")
    again = datasets.load(tmp_path / "out")
    [q] = again.questions
    assert q.parts == [["1313851", "131万"], ["186.35万"]] and q.kind == "multi-part"
    assert len(again.corpus) == 3 and len(q.gold_ids) == 2  # each document once
    assert again.language == "zh" and ds.questions[0].answer_parts() == q.parts
    (tmp_path / "bad.json").write_text('{"id": 1, "query": "x"}\n', encoding="utf-8")
    try:
        datasets.convert_rgb(tmp_path / "bad.json", tmp_path / "bad")
    except datasets.DatasetError as e:
        assert "bad.json:1" in str(e)
    else:
        raise AssertionError("a record without answers must be refused")
