"""Citations and attribution: which passages an answer rests on, and none under a refusal (pure functions)."""

from __future__ import annotations

from zhiku.chat.citations import (
    ATTRIBUTED,
    CITED,
    SEARCHED,
    assign_roles,
    cited_numbers,
    is_refusal,
    support,
    supporting,
)
from zhiku.chat.sources import KBSource, Source

PASSAGES = [
    "The Saltmarsh lighthouse was built in 1871 and is painted red and white.",
    "The keeper of the Saltmarsh lighthouse is Oswin Fairweather, who has lived there since 1998.",
    "Ferries to the island leave the harbour at 9 am and 4 pm every day.",
]
SOURCES = [KBSource(index=i, kb="kb", document=f"d{i}.md") for i in range(1, 4)]


def roles(answer: str, passages: list[str] = PASSAGES) -> list[tuple[int, str]]:
    return [(s.index, s.role or "") for s in assign_roles(answer, SOURCES, passages, "NO ANSWER")]


def test_cited_numbers_in_many_spellings() -> None:
    assert cited_numbers("It is Oswin [2], built 1871 [1][3] and [2, 3].") == [2, 1, 3]
    assert cited_numbers("答案是村雨城【2】，见 [1、3]。") == [2, 1, 3]
    assert cited_numbers("no citation, 2020 (approx)") == []


def test_refusals_are_recognised() -> None:
    for reply in ("根据已知信息无法回答该问题。", "The known information does not answer this question.",
                  "I don't know.", "", "NO ANSWER", "资料中没有提到这一点。"):
        assert is_refusal(reply, "NO ANSWER"), reply
    for reply in ("Oswin Fairweather [2]", "1871", "村雨城"):
        assert not is_refusal(reply, "NO ANSWER"), reply


def test_a_citation_that_holds_the_answer_is_kept_first() -> None:
    assert roles("The keeper is Oswin Fairweather [2].") == [(2, CITED), (1, SEARCHED), (3, SEARCHED)]


def test_a_wrong_citation_gives_way_to_attribution() -> None:
    # the model cites [1] out of habit; the answer's content is in passage 2
    assert roles("Oswin Fairweather [1]") == [(2, ATTRIBUTED), (1, SEARCHED), (3, SEARCHED)]


def test_an_uncited_answer_is_attributed_by_content() -> None:
    assert roles("Ferries leave at 9 am and 4 pm.") == [(3, ATTRIBUTED), (1, SEARCHED), (2, SEARCHED)]
    assert roles("渡船每天上午九点开。", ["灯塔建于1871年。", "渡船每天上午九点和下午四点从港口出发。", "看守人是奥斯温。"]) \
        == [(2, ATTRIBUTED), (1, SEARCHED), (3, SEARCHED)]


def test_nothing_supports_a_refusal_or_an_unrelated_answer() -> None:
    for answer in ("The known information does not answer this question.", "NO ANSWER"):
        assert roles(answer) == [(1, SEARCHED), (2, SEARCHED), (3, SEARCHED)]
    # content found in no passage (an invented answer) is not attributed either
    assert supporting(assign_roles("Captain Nemo, since 1950.", SOURCES, PASSAGES)) == []


def test_an_answer_that_restates_the_question_rests_on_nothing() -> None:
    question = "Who is the keeper of the Saltmarsh lighthouse?"
    restated = "The keeper of the Saltmarsh lighthouse is the keeper of the Saltmarsh lighthouse."
    assert supporting(assign_roles(restated, SOURCES, PASSAGES, question=question)) == []
    found = assign_roles("Oswin Fairweather", SOURCES, PASSAGES, question=question)
    assert [(s.index, s.role) for s in supporting(found)] == [(2, ATTRIBUTED)]


def test_support_weighs_what_only_one_passage_holds() -> None:
    scores = support("Saltmarsh lighthouse keeper Oswin Fairweather", PASSAGES)
    assert scores[1] > 0.8 > scores[0] and scores[2] == 0.0


def test_roles_travel_with_the_source_as_json() -> None:
    out = assign_roles("Oswin Fairweather [2]", SOURCES, PASSAGES)
    back = [Source.from_dict(s.to_dict()) for s in out]
    assert [(s.index, s.role, s.supports) for s in back] == [(2, CITED, True), (1, SEARCHED, False),
                                                              (3, SEARCHED, False)]
    assert back[0].support is not None and back[0].support > 0.6
    # a source stored before roles existed is not judged: shown as before
    old = Source.from_dict({"index": 1, "document": "a.md"})
    assert old.role is None and old.supports
