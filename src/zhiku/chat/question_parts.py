"""The parts of a question that asks about several things, each as a query of its own.

"塔里木油田2021年和2022年的油气产量分别是多少" asks about two years, which two news items report; one search
for the whole question finds the one that matches best and, often, not the other. So a question with parts
is searched once per part (kb_chat.retrieve) and the passages are merged. A part is:

- one side of a conjunction between two items of the same sort ("A和B的X" → "A的X", "B的X"; "X of A and B" is
  left whole in English, where the sides are hard to tell apart without a parser);
- one clause of several that each ask something ("X是什么，Y多少" / "What is X? And how ...?"); a clause
  without the first clause's subject gets it ("起售价多少" → "iPhone SE 3 起售价多少").

A question that is none of these is its own only part. Parts are for search only; the model reads the
question as asked.
"""

from __future__ import annotations

import re

from zhiku.chat.constraints import posseg
from zhiku.chat.questions import ASKING_EN

MAX_PARTS = 4
_CONJUNCTIONS = frozenset({"和", "及", "与", "以及", "跟", "、"})
# jieba's tags of words that cannot be part of an item: particles, prepositions, conjunctions, adverbs,
# pronouns, modal particles
_FUNCTION = frozenset("upcdry")
_NOT_ITEMS = frozenset({"是", "有", "在", "为", "分别", "各自"})
_UNITS = frozenset({"年", "月", "日", "号", "季度", "岁", "届"})
_NAMED = frozenset({"nr", "ns", "nt", "nz", "m", "t", "en", "j"})  # names, numbers, abbreviations ("en": eng)
_CLAUSE_ZH = re.compile(r"[，,；;？?]|另外|还有")
_CLAUSE_EN = re.compile(r"(?<=[?;])\s+|,?\s+and\s+(?=(?:what|which|who|whom|when|where|why|how)\b)"
                        r"|\s*\?\s*(?:also|and)[, ]\s*", re.I)
_ASKING_ZH = re.compile(r"什么|多少|哪|几|谁|何时|为何|为什么|如何|怎么|是否")
_SUBJECT_ZH = re.compile(r"^(.{2,20}?)(?:的|是|有|在)")


def parts(question: str, language: str) -> list[str]:
    """The question's parts as queries (see the module doc); [question] when it has one part."""
    q = question.strip()
    found = _clauses(q, language)
    if len(found) < 2 and language == "zh":
        found = _conjoined(q)
    return found[:MAX_PARTS] if len(found) >= 2 else [q]


def _clauses(question: str, language: str) -> list[str]:
    asking = _ASKING_ZH if language == "zh" else ASKING_EN
    pieces = [p.strip(" ，,；;？?。.") for p in (_CLAUSE_ZH if language == "zh" else _CLAUSE_EN).split(question)]
    clauses = [p for p in pieces if p]
    if len(clauses) < 2 or sum(bool(asking.search(c)) for c in clauses) < 2:
        return []
    if language != "zh":
        return clauses
    head = _SUBJECT_ZH.match(clauses[0])
    subject = head.group(1) if head else ""
    out = [clauses[0]]
    for c in clauses[1:]:
        c = re.sub(r"^(?:它|其|他|她|该)的?", "", c)
        out.append(c if not subject or subject in c else f"{subject} {c}")
    return out


def _conjoined(question: str) -> list[str]:
    """The question once with each side of a conjunction of two items (the other side dropped); the
    conjunction between names or numbers when there are several ("国家和地区参加了A和B": A和B)."""
    words: list[tuple[str, str]] = []
    for w in posseg().cut(question):
        if words and words[-1][0].isdigit() and w.word in _UNITS:  # "2021" "年" is one item
            words[-1] = (words[-1][0] + w.word, "m")
        else:
            words.append((w.word, w.flag))
    best: tuple[int, str, str, str] | None = None
    for i in range(1, len(words) - 1):
        word, flag = words[i]
        if word not in _CONJUNCTIONS or (flag != "c" and word != "、"):
            continue
        left, right = _items(words, i)
        if not left or not right:
            continue
        rank = int(any(f[:2] in _NAMED for _, f in left) and any(f[:2] in _NAMED for _, f in right))
        if best is None or rank > best[0]:
            best = (rank, "".join(w for w, _ in left), word, "".join(w for w, _ in right))
    if best is None:
        return []
    _, a, word, b = best
    start = question.find(a + word + b)
    if start < 0:
        return []
    before, after = question[:start], question[start + len(a + word + b):]
    return [f"{before}{a}{after}", f"{before}{b}{after}"]


def _items(words: list[tuple[str, str]], at: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The words on each side of the conjunction at `at`: one word each, the shorter side then grown by its
    next word (away from the conjunction) while it is shorter by two characters or more and the word can belong
    to an item: "英特尔和英伟达" (jieba: 英 伟达) gives 英特尔 / 英伟达, "澳大利亚和新西兰运动员" 澳大利亚 / 新西兰."""
    if not (_part_of_item(words[at - 1]) and _part_of_item(words[at + 1])):
        return [], []
    lo, hi = at - 1, at + 1  # the outermost word of each side
    left, right = [words[lo]], [words[hi]]

    def size(item: list[tuple[str, str]]) -> int:
        return sum(len(w) for w, _ in item)

    while abs(size(left) - size(right)) > 1:
        if size(left) < size(right) and lo > 0 and _part_of_item(words[lo - 1]):
            lo -= 1
            left.insert(0, words[lo])
        elif size(right) < size(left) and hi < len(words) - 1 and _part_of_item(words[hi + 1]):
            hi += 1
            right.append(words[hi])
        else:
            break
    # "北京冬奥会和杭州亚运会": a word after the right side ending like the left side's last word (会, 会) makes
    # the right side a place-and-event like the left one: both grow by a word
    if (lo > 0 and hi < len(words) - 1 and _part_of_item(words[lo - 1]) and _part_of_item(words[hi + 1])
            and words[hi + 1][0][-1] == left[-1][0][-1] and len(words[hi + 1][0]) > 1):
        left.insert(0, words[lo - 1])
        right.append(words[hi + 1])
    return left, right


def _part_of_item(word: tuple[str, str]) -> bool:
    text, flag = word
    if flag == "x":
        return text.isalnum()
    return flag[:1] not in _FUNCTION and text not in _NOT_ITEMS
