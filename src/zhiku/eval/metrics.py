"""Retrieval and answer metrics.

Ranking metrics take the ranked list of *corpus ids* behind the retrieved chunks (None for a chunk that maps to
no corpus item) and the question's gold grades. A corpus item split into several chunks is credited once, at its
first chunk, for recall and nDCG (so they stay within [0, 1]); hit@k and MRR look for the first gold chunk.

Tied scores: a search engine's order inside a group of equal scores is arbitrary, so every metric is the
*expected* value over all orders of each tied group (McSherry & Najork, ECIR 2008), computed exactly, also when
one corpus item has several chunks in a tie. Without scores the given order is taken as is.

nDCG uses linear gain, grade / log2(rank + 1), as trec_eval and BEIR do.

Answer metrics follow the official scripts: SQuAD v1.1 (lower case, drop punctuation and English articles, then
token EM / bag-of-tokens F1) and CMRC 2018 (characters for CJK, words for other runs, punctuation dropped; F1 over
the longest common substring of those segments). CMRC's script splits non-CJK runs with nltk's word_tokenize; a
regular expression split stands in for it here (identical on the CJK text the set consists of).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from zhiku.chat.citations import is_refusal

RANK_KS = (1, 3, 5, 10)
MRR_K = 10
NDCG_K = 10


# ---------------------------------------------------------------- ranking


def _groups(scores: Sequence[float] | None, n: int) -> list[tuple[int, int]]:
    """[start, end) of each run of equal scores (one group per position when there are no scores)."""
    if scores is None:
        return [(i, i + 1) for i in range(n)]
    out: list[tuple[int, int]] = []
    start = 0
    for i in range(1, n + 1):
        if i == n or not math.isclose(scores[i], scores[start], rel_tol=1e-9, abs_tol=1e-12):
            out.append((start, i))
            start = i
    return out


def _p_none_in_first(n: int, g: int, m: int) -> float:
    """Probability that none of g marked items lands in the first m of n shuffled positions."""
    return math.comb(n - g, m) / math.comb(n, m) if m <= n - g else 0.0


def ranking_metrics(ranked: Sequence[str | None], grades: Mapping[str, float],
                    scores: Sequence[float] | None = None, ks: Sequence[int] = RANK_KS) -> dict[str, float]:
    """hit@k, recall@k, mrr@10 and ndcg@10 of one ranked list against the gold grades (all > 0).

    `scores`, when given, must be sorted in descending order like `ranked`; ties are averaged over.
    """
    if scores is not None:
        if len(scores) != len(ranked):
            raise ValueError("ranked and scores differ in length")
        if any(b > a for a, b in zip(scores, scores[1:], strict=False)):
            raise ValueError("scores must be in descending order")
    n = len(ranked)
    is_gold = [cid is not None and grades.get(cid, 0) > 0 for cid in ranked]
    groups = _groups(scores, n)
    out: dict[str, float] = {}

    # hit@k and MRR: the first group holding a gold chunk decides.
    first = next(((s, e) for s, e in groups if any(is_gold[s:e])), None)
    for k in ks:
        if first is None or k <= first[0]:
            hit = 0.0
        else:
            s, e = first
            g = sum(is_gold[s:e])
            hit = 1.0 if k >= e else 1.0 - _p_none_in_first(e - s, g, k - s)
        out[f"hit@{k}"] = hit
    out[f"mrr@{MRR_K}"] = 0.0 if first is None else _expected_discount(first, sum(is_gold[first[0]:first[1]]),
                                                                       lambda rank: 1 / rank, MRR_K)

    # recall@k and nDCG are per gold corpus item, decided by the item's first chunk: the first group that
    # holds any of its chunks (c of them) places it at one of that group's c-of-n shuffled positions.
    placed: dict[str, tuple[tuple[int, int], int]] = {}
    for s, e in groups:
        for cid in ranked[s:e]:
            if cid is not None and grades.get(cid, 0) > 0 and cid not in placed:
                placed[cid] = ((s, e), sum(1 for x in ranked[s:e] if x == cid))
    total_gold = sum(1 for v in grades.values() if v > 0)
    for k in ks:
        found = 0.0
        for (s, e), c in placed.values():
            if k >= e:
                found += 1.0
            elif k > s:
                found += 1.0 - _p_none_in_first(e - s, c, k - s)
        out[f"recall@{k}"] = found / total_gold if total_gold else 0.0
    dcg = sum(grades[cid] * _expected_discount(group, c, lambda rank: 1 / math.log2(rank + 1), NDCG_K)
              for cid, (group, c) in placed.items())
    ideal = sorted((v for v in grades.values() if v > 0), reverse=True)[:NDCG_K]
    idcg = sum(v / math.log2(i + 2) for i, v in enumerate(ideal))
    out[f"ndcg@{NDCG_K}"] = dcg / idcg if idcg else 0.0
    return out


def _expected_discount(group: tuple[int, int], marked: int, discount: Callable[[int], float], cutoff: int) -> float:
    """E[discount(rank of the first of `marked` items)] when they are shuffled within `group` (ranks 1-based),
    counting only ranks up to `cutoff`."""
    s, e = group
    size = e - s
    total = 0.0
    for j in range(size):  # P(first at offset j) = P(none in the first j) - P(none in the first j+1)
        rank = s + j + 1
        if rank > cutoff:
            break
        total += (_p_none_in_first(size, marked, j) - _p_none_in_first(size, marked, j + 1)) * discount(rank)
    return total


def mean_metrics(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Average each metric over questions (the keys of the first row)."""
    if not rows:
        return {}
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}


# ---------------------------------------------------------------- answers, English (SQuAD v1.1)

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """SQuAD v1.1's normalisation: lower case, no punctuation, no articles, single spaces."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def squad_em(prediction: str, answers: Sequence[str]) -> float:
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(a) for a in answers))


def _token_f1(pred: list[str], gold: list[str]) -> float:
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_f1(prediction: str, answers: Sequence[str]) -> float:
    p = normalize_answer(prediction).split()
    return max((_token_f1(p, normalize_answer(a).split()) for a in answers), default=0.0)


# ---------------------------------------------------------------- answers, Chinese (CMRC 2018)

# The punctuation list of CMRC 2018's evaluation script (its "……" entry never matches a single character).
_CMRC_PUNCT = set("-:_*^/\\~`+=，。：？！“”；’《》·、「」（）－～『』")
_CJK_CHAR = re.compile(r"[\u4e00-\u9fa5]")
_WORDS = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def cmrc_segments(s: str, drop_punct: bool = True) -> list[str]:
    """CMRC's mixed segmentation: each CJK character alone, other runs split into words."""
    out: list[str] = []
    run = ""
    for ch in s.lower().strip():
        if drop_punct and ch in _CMRC_PUNCT:
            continue
        if _CJK_CHAR.match(ch) or ch in _CMRC_PUNCT:
            if run:
                out.extend(_WORDS.findall(run))
                run = ""
            out.append(ch)
        else:
            run += ch
    if run:
        out.extend(_WORDS.findall(run))
    return out


def cmrc_strip(s: str) -> str:
    """CMRC's remove_punctuation: lower case and strip, CMRC punctuation removed."""
    return "".join(ch for ch in s.lower().strip() if ch not in _CMRC_PUNCT)


def _longest_common_run(a: list[str], b: list[str]) -> int:
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                cur[j + 1] = prev[j] + 1
                best = max(best, cur[j + 1])
        prev = cur
    return best


def cmrc_em(prediction: str, answers: Sequence[str]) -> float:
    p = cmrc_strip(prediction)
    return float(any(p == cmrc_strip(a) for a in answers))


def cmrc_f1(prediction: str, answers: Sequence[str]) -> float:
    pred = cmrc_segments(prediction)
    best = 0.0
    for a in answers:
        gold = cmrc_segments(a)
        common = _longest_common_run(gold, pred)
        if common:
            precision, recall = common / len(pred), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


# ---------------------------------------------------------------- answers, common

def is_no_answer(reply: str) -> bool:
    """The reply declines to answer (empty, or says it does not know / the material does not say); the
    product's own test of a refusal, so the evaluation and the source roles agree."""
    return is_refusal(reply)


def contains(prediction: str, answers: Sequence[str], language: str) -> float:
    """The normalised answer appears in the normalised reply (whole words for English)."""
    if language == "zh":
        p = "".join(cmrc_strip(prediction).split())
        return float(any((a := "".join(cmrc_strip(x).split())) and a in p for x in answers))
    p = f" {normalize_answer(prediction)} "
    return float(any((a := normalize_answer(x)) and f" {a} " in p for x in answers))


def answer_scores(prediction: str, answers: Sequence[str], language: str) -> dict[str, float]:
    """em, f1, contains and no_answer of one reply (the best over the reference answers)."""
    if language == "zh":
        em, f1 = cmrc_em(prediction, answers), cmrc_f1(prediction, answers)
    else:
        em, f1 = squad_em(prediction, answers), squad_f1(prediction, answers)
    return {"em": em, "f1": f1, "contains": contains(prediction, answers, language),
            "no_answer": float(is_no_answer(prediction))}
