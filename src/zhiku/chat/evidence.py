"""Evidence, not chunks: from the retrieved passages, the sentences that bear on the question.

A 500-character chunk holds a few sentences about the question and many about something else; a small model
copies from whatever is in front of it. So before the prompt is built, each passage is cut into sentences
and scored by the question's terms it holds (words, numbers, pairs of Chinese characters; rarer terms weigh
more). Sentences scoring at least `KEEP` of the best one are kept with their neighbours (a how-to or list
question keeps more of what follows: the steps or items come after the sentence naming them), in their
order, gaps marked "…" (for a how-to or list question, the whole list or set of steps after a kept sentence
stays: its items rarely repeat the question's words); a passage with no such sentence is left out. The document title stays with each
passage (kb_chat.hit_passage). When no sentence shares a term with the question, the passages go in whole.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from zhiku.chat import citations

MAX_ITEMS = 30  # the longest list or set of steps kept after the sentence that introduces it
_ITEM = re.compile(r"\s*(?:[-*•+]\s|\d{1,2}[.)、]|[（(]\d{1,2}[)）]|`|\||[$#>] )")  # bullet, number, code, table row
KEEP = 0.5  # a sentence is evidence when it scores at least this share of the best sentence
GAP = " … "
# an English stop needs a space after it ("27.3", "U.S." stay whole); a Chinese one does not
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|(?<=[。！？；])|\n+")
_ASKING = frozenset({"什么", "多少", "哪里", "哪个", "哪些", "哪一", "为何", "怎么", "怎样", "如何", "是谁", "几个", "几年"})


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split(text) if s.strip()]


def question_terms(question: str) -> set[str]:
    return citations.content_terms(question) - _ASKING


@dataclass(frozen=True)
class Evidence:
    hit: int  # index of the passage in the retrieved list
    text: str  # the selected sentences


def select(question: str, texts: Sequence[str], kind: str = "factoid") -> list[Evidence]:
    """The evidence of each passage that has some, in the passages' order (see the module doc)."""
    asked = question_terms(question)
    split = [sentences(t) for t in texts]
    terms = [[citations.content_terms(s) & asked for s in ss] for ss in split]
    # rarer terms weigh more: a term in every sentence tells nothing about which sentence answers
    df: dict[str, int] = {}
    for ts in terms:
        for t in ts:
            for term in t:
                df[term] = df.get(term, 0) + 1
    n = sum(len(ss) for ss in split) or 1
    scores = [[sum(math.log(1 + n / df[x]) for x in t) for t in ts] for ts in terms]
    best = max((s for ss in scores for s in ss), default=0.0)
    if best <= 0:
        return [Evidence(i, t) for i, t in enumerate(texts)]
    before, after = (1, 4) if kind in ("howto", "list") else (1, 1)
    out = []
    for i, (ss, sc) in enumerate(zip(split, scores, strict=True)):
        keep: set[int] = set()
        for j, s in enumerate(sc):
            if s >= KEEP * best:
                keep.update(range(max(0, j - before), min(len(ss), j + after + 1)))
                if kind in ("howto", "list"):  # the whole list or set of steps that follows, not its first items
                    end = j + 1
                    while end < len(ss) and end - j <= MAX_ITEMS and _ITEM.match(ss[end]):
                        end += 1
                    keep.update(range(j, end))
        if keep:
            out.append(Evidence(i, _join(ss, sorted(keep), texts[i])))
    return out


def _join(ss: list[str], keep: list[int], text: str) -> str:
    if len(keep) == len(ss):
        return text.strip()
    parts: list[str] = []
    for n, j in enumerate(keep):
        if n and j != keep[n - 1] + 1:
            parts.append(GAP)
        elif n:
            parts.append("" if _is_cjk_end(ss[j - 1]) else " ")
        parts.append(ss[j].strip())
    if keep[0] > 0:
        parts.insert(0, "… ")
    if keep[-1] < len(ss) - 1:
        parts.append(" …")
    return "".join(parts)


def _is_cjk_end(s: str) -> bool:
    return bool(s.strip()) and s.strip()[-1] in "。！？；：，"
