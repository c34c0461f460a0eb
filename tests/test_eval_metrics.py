"""Every retrieval and answer metric against values worked out by hand (ties, no gold, graded relevance)."""

from __future__ import annotations

import itertools
import random

import pytest

from zhiku.eval.metrics import (
    answer_scores,
    cmrc_em,
    cmrc_f1,
    cmrc_segments,
    contains,
    is_no_answer,
    mean_metrics,
    normalize_answer,
    ranking_metrics,
    squad_em,
    squad_f1,
)

approx = pytest.approx


def test_ranking_without_ties() -> None:
    # gold c at rank 3 and d at rank 5; "a" appears twice (two chunks of one item)
    m = ranking_metrics(["a", "b", "c", "a", "d"], {"c": 1, "d": 1})
    assert [m[f"hit@{k}"] for k in (1, 3, 5, 10)] == [0, 1, 1, 1]
    assert m["mrr@10"] == approx(1 / 3)
    assert [m[f"recall@{k}"] for k in (1, 3, 5, 10)] == [0, 0.5, 1, 1]
    # DCG = 1/log2(4) + 1/log2(6) = 0.886853; IDCG = 1 + 1/log2(3) = 1.630930
    assert m["ndcg@10"] == approx(0.886853 / 1.630930, abs=1e-6)


def test_several_chunks_of_one_gold_item_count_once() -> None:
    m = ranking_metrics(["g", "g", "x"], {"g": 1})
    assert m["recall@3"] == 1.0
    assert m["ndcg@10"] == approx(1.0)
    assert m["mrr@10"] == 1.0


def test_no_gold_found() -> None:
    for ranked in (["x", "y", None], []):
        m = ranking_metrics(ranked, {"g": 1})
        assert set(m.values()) == {0.0}, ranked


def test_unmapped_chunk_and_rank_beyond_cutoffs() -> None:
    assert ranking_metrics([None, "g"], {"g": 1})["mrr@10"] == 0.5
    m = ranking_metrics([f"x{i}" for i in range(10)] + ["g"], {"g": 1})  # rank 11: outside every cut-off
    assert m["hit@10"] == 0 and m["mrr@10"] == 0 and m["ndcg@10"] == 0


def test_graded_relevance() -> None:
    # a has grade 2 at rank 2, b grade 1 at rank 1: DCG = 1 + 2/log2(3) = 2.261860, IDCG = 2 + 1/log2(3) = 2.630930
    m = ranking_metrics(["b", "a", "x"], {"a": 2, "b": 1})
    assert m["ndcg@10"] == approx(2.261860 / 2.630930, abs=1e-6)
    assert m["recall@1"] == 0.5 and m["recall@3"] == 1.0
    assert ranking_metrics(["a", "b"], {"a": 2, "b": 1})["ndcg@10"] == approx(1.0)


def test_ties_are_averaged_over_orders() -> None:
    # one gold among three equal scores: at rank 1, 2 or 3 with probability 1/3 each
    m = ranking_metrics(["x", "g", "y"], {"g": 1}, scores=[0.5, 0.5, 0.5], ks=(1, 2, 3))
    assert m["hit@1"] == approx(1 / 3) and m["hit@2"] == approx(2 / 3) and m["hit@3"] == 1.0
    assert m["mrr@10"] == approx(11 / 18)  # (1 + 1/2 + 1/3) / 3
    assert m["recall@1"] == approx(1 / 3)
    assert m["ndcg@10"] == approx(0.710310, abs=1e-6)  # (1 + 1/log2(3) + 1/2) / 3
    # the given order inside the tie does not matter
    assert ranking_metrics(["g", "x", "y"], {"g": 1}, [0.5] * 3, (1, 2, 3)) == approx(m)


def test_tie_straddling_the_cutoff_and_two_gold_in_a_tie() -> None:
    m = ranking_metrics(["a", "x", "g", "y"], {"g": 1}, scores=[0.9, 0.5, 0.5, 0.1], ks=(1, 2, 3))
    assert (m["hit@1"], m["hit@2"], m["hit@3"]) == (0, approx(0.5), 1)
    assert m["mrr@10"] == approx(0.5 / 2 + 0.5 / 3)
    # {g, g', x} tied: x first with probability 1/3 -> first gold at rank 2
    m = ranking_metrics(["x", "g", "h"], {"g": 1, "h": 1}, scores=[0.3, 0.3, 0.3], ks=(1,))
    assert m["hit@1"] == approx(2 / 3)
    assert m["mrr@10"] == approx(5 / 6)
    assert m["recall@1"] == approx(1 / 3)  # 2 gold x 1/3 of a place each, out of 2


def test_ties_equal_the_mean_over_every_order() -> None:
    rng = random.Random(7)
    for _ in range(60):
        n = rng.randint(1, 6)
        ids = [f"d{rng.randint(0, 3)}" for _ in range(n)]  # repeats: several chunks of one item
        scores = sorted((rng.choice([0.2, 0.5, 0.8]) for _ in range(n)), reverse=True)
        grades = {d: rng.choice([1.0, 2.0]) for d in set(ids) | {"d9"} if rng.random() < 0.5}
        groups = [[i for i in range(n) if scores[i] == s] for s in sorted(set(scores), reverse=True)]
        runs = [ranking_metrics([ids[i] for g in perm for i in g], grades, ks=(1, 2, 3))
                for perm in itertools.product(*(itertools.permutations(g) for g in groups))]
        expected = mean_metrics(runs)
        assert ranking_metrics(ids, grades, scores, (1, 2, 3)) == approx(expected)


def test_two_chunks_of_the_gold_item_in_a_tie() -> None:
    # [x, g, g] tied: g is first with probability 2/3 (either of its chunks), else second
    m = ranking_metrics(["x", "g", "g"], {"g": 1}, scores=[0.4, 0.4, 0.4], ks=(1,))
    assert m["hit@1"] == approx(2 / 3) and m["recall@1"] == approx(2 / 3)
    assert m["ndcg@10"] == approx(2 / 3 + 1 / 3 / 1.584963, abs=1e-6)  # 1/log2(3) = 1/1.584963


def test_scores_must_be_sorted() -> None:
    with pytest.raises(ValueError):
        ranking_metrics(["a", "b"], {"a": 1}, scores=[0.1, 0.9])


def test_mean_metrics() -> None:
    assert mean_metrics([{"hit@1": 1.0}, {"hit@1": 0.0}, {"hit@1": 0.5}]) == {"hit@1": 0.5}
    assert mean_metrics([]) == {}


def test_squad_scores() -> None:
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert squad_em("Denver Broncos", ["the Denver Broncos", "Broncos"]) == 1.0
    assert squad_em("Denver", ["the Denver Broncos"]) == 0.0
    # [broncos, won] vs [denver, broncos]: 1 common, P = R = 1/2
    assert squad_f1("Broncos won", ["Denver Broncos"]) == 0.5
    assert squad_f1("Broncos won", ["Denver Broncos", "Broncos"]) == approx(2 / 3)  # best over references
    assert squad_f1("nothing", ["Denver Broncos"]) == 0.0


def test_cmrc_scores() -> None:
    assert cmrc_segments("光荣和ω-force") == ["光", "荣", "和", "ωforce"]
    assert cmrc_em("光荣和ω-force。", ["光荣和ω-force"]) == 1.0
    # 4 common segments of 6 predicted and 4 gold: P = 2/3, R = 1
    assert cmrc_f1("光荣和ω-force开发", ["光荣和ω-force"]) == approx(0.8)
    # longest common *run*, not a bag of characters: "光荣" only
    assert cmrc_f1("和光荣", ["光荣和"]) == approx(2 / 3)
    assert cmrc_f1("村雨城", ["光荣"]) == 0.0


def test_contains_and_no_answer() -> None:
    assert contains("It was in 1990.", ["1990"], "en") == 1.0
    assert contains("In 19901", ["1990"], "en") == 0.0  # whole words only
    assert contains("答案是村雨城。", ["村雨城"], "zh") == 1.0
    assert contains("答案是村雨", ["村雨城"], "zh") == 0.0
    for reply in ("I don't know.", "The context does not mention it.", "无法回答。", "", "  "):
        assert is_no_answer(reply), reply
    for reply in ("Paris", "村雨城", "Denver Broncos know how to win"):
        assert not is_no_answer(reply), reply


def test_answer_scores_pick_the_language() -> None:
    en = answer_scores("the Broncos", ["Denver Broncos"], "en")
    assert en == {"em": 0.0, "f1": approx(2 / 3), "contains": 0.0, "no_answer": 0.0}
    zh = answer_scores("光荣", ["光荣和ω-force"], "zh")
    assert zh["f1"] == approx(2 * 1 * 0.5 / 1.5) and zh["em"] == 0.0
