"""What kind of answer a question wants, and the one refusal text in its language.

Kinds (a cheap reading of the question's wording, English and Chinese):
- ``howto``: how to do something (如何/怎么/步骤, "how do I", "how to"): the steps;
- ``list``: which ones (哪些/有哪几, "which ... are", "list"): every item the passages give;
- ``multi``: several parts (分别, two interrogatives, "X and how ..."): every part answered;
- ``factoid``: one fact: a short sentence that holds it.
"""

from __future__ import annotations

import re

from zhiku.config import Settings

REFUSAL = {
    "zh": "根据已知信息无法回答该问题。",
    "en": "The documents do not answer this question.",
}
NOT_COVERED = {  # said of the part of a question the documents leave open
    "zh": "资料没有提到",
    "en": "The documents do not say",
}

_HOWTO = re.compile(r"如何|怎么|怎样|步骤|方法是|^how (?:do|can|should|would|to)\b|\bhow to\b|\bsteps?\b", re.I)
_LIST = re.compile(r"哪些|哪几|有几种|列出|列举|\bwhich\b.*\b(?:are|were)\b|\bwhat are\b|\blist\b|\bwhat kinds?\b", re.I)
_MULTI_ZH = re.compile(r"分别|各是|各为|各自|以及.*[？?]?$")
_ASKING_ZH = re.compile(r"什么|多少|哪里|哪个|哪一|哪年|哪天|几[个年月日号次名位]|谁|何时|为何|为什么|如何|怎么|是否")
ASKING_EN = re.compile(r"\b(?:what|which|who|whom|when|where|why|how)\b", re.I)  # an English question word
_AND_ASKING_EN = re.compile(r"\band (?:what|which|who|whom|when|where|why|how|is|are|does|do|can)\b|respectively|\bboth\b.+\band\b", re.I)
_TWO_CLAUSES_EN = re.compile(r"\b(?:what|which|who|when|where|why|how)\b[^,;?]+[,;?]\s*(?:and\s+)?(?:what|which|who|when|where|why|how)\b", re.I)
_CONJUNCTIONS = frozenset({"和", "及", "与", "以及", "跟"})


def kind(question: str, language: str) -> str:
    """The question's kind: factoid, multi, list or howto (see the module doc)."""
    q = question.strip()
    if language == "zh":
        if (_MULTI_ZH.search(q) or len(_ASKING_ZH.findall(q)) >= 2 or q.count("？") + q.count("?") >= 2
                or _joins_two(q)):
            return "multi"
    elif _AND_ASKING_EN.search(q) or _TWO_CLAUSES_EN.search(q) or q.count("?") >= 2:
        return "multi"
    if _HOWTO.search(q):
        return "howto"
    if _LIST.search(q):
        return "list"
    return "factoid"


def _joins_two(question: str) -> bool:
    """"A和B的…" / "A及B": a conjunction (as jieba tags it, not the 和 inside 和平) asks about two things."""
    from zhiku.chat.constraints import posseg

    return any(w.word in _CONJUNCTIONS and w.flag == "c" for w in posseg().cut(question))


def refusal(settings: Settings, language: str) -> str:
    """The one refusal text: `no_answer_reply` when set, else the built-in one in the question's language."""
    return settings.no_answer_reply or REFUSAL.get(language, REFUSAL["en"])
