"""What a question pins down, and whether a passage meets it: the numbers, years, versions, quoted titles and
named entities a question asks about.

A same-topic distractor (the 2021 report for a 2022 question, version 3 for version 4, another company's
figure) shares most of a question's words, so word overlap cannot tell it from the answer's passage. What it
lacks is the constraint itself: an answer is only taken as stated when the passages it rests on (or their
documents' titles) hold every constraint of the question (chat/answer_check.py), and a question whose
constraints no retrieved passage holds is refused before the model is asked (chat/kb_chat.py).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from zhiku.cjk import HAN_RUN
from zhiku.kb.segment import pos_tagger

# 2022, 3.5, 1,000, 10%, v2.1 (numbers of two or more characters: a lone digit is too often a count word)
_NUMBER = re.compile(r"(?<![\w.])v?\d[\d,]*(?:\.\d+)*%?(?![\w])|(?<![\w.])v?\d+(?:\.\d+)+", re.IGNORECASE)
_ARABIC_IN_HAN = re.compile(r"\d+(?:\.\d+)*")
_QUOTED = re.compile(r"[“\"《「『]([^”\"》」』]{2,40})[”\"》」』]")
_LATIN_IN_HAN = re.compile(r"[A-Za-z][A-Za-z0-9.+#_-]*[A-Za-z0-9+#]|[A-Za-z]{2,}")
_CAPITALISED = re.compile(r"\b[A-Z][A-Za-z'’-]+|\b[A-Z]{2,}\b")
_QUESTION_WORDS = frozenset("""what which who whom whose when where why how is are was were do does did the a an in on
of for to by at from and or if can could should would will may might has have had i you he she it we they this that
these those there according during after before""".split())
_ENTITY_TAGS = ("nr", "ns", "nt", "nz")
MANY_NAMES = 3  # an English question naming this many things may paraphrase some: most must be missing
_ASKING_ZH = re.compile(r"什么|多少|哪|几|谁|何|怎|如何|为什么|是否")
_COMMON_HAN = frozenset({"中国", "中文", "公司", "国家", "政府", "世界", "全国"})  # too common to pin anything


@lru_cache(maxsize=1)
def posseg() -> Any:
    """The part-of-speech tagger of kb/segment.py (not jieba's global one: a second dictionary in memory,
    cached in the temporary folder)."""
    return pos_tagger()


def _numbers(text: str) -> set[str]:
    out = set()
    for m in _NUMBER.finditer(text):
        n = m.group(0).lower().replace(",", "").rstrip("%").lstrip("v")
        if len(n) >= 2 or "." in n:
            out.add(n)
    return out


def _han_numbers(text: str) -> set[str]:
    return {n for n in _ARABIC_IN_HAN.findall(text) if len(n) >= 2 or "." in n}


def constraints(question: str) -> set[str]:
    """The strings a passage must hold to answer `question` (lower case)."""
    found: set[str] = {q.strip().lower() for q in _QUOTED.findall(question) if q.strip()}
    if HAN_RUN.search(question):
        found |= _han_numbers(question)
        found |= {w.lower() for w in _LATIN_IN_HAN.findall(question)}
        for run in HAN_RUN.findall(question):
            words = [(w.word, w.flag) for w in posseg().cut(run)]
            asking = [i for i, (w, _) in enumerate(words) if _ASKING_ZH.match(w)]
            for i, (word, flag) in enumerate(words):
                # a noun next to an interrogative names what is asked (哪座城市, 籍贯在哪), not a constraint
                if any(abs(i - a) <= 2 for a in asking):
                    continue
                if flag.startswith(_ENTITY_TAGS) and len(word) >= 2 and word not in _COMMON_HAN:
                    found.add(word)
        return found
    found |= _numbers(question)
    first = True
    for m in re.finditer(r"[^\s]+", question):
        word = m.group(0).strip("?,.;:!()'\"")
        if not first and _CAPITALISED.fullmatch(word) and word.lower() not in _QUESTION_WORDS:
            found.add(word.lower().removesuffix("'s").removesuffix("’s"))
        first = False
    return found


def _holds(text: str, constraint: str) -> bool:
    """Whether `text` (lower case) holds the constraint, allowing for how a name varies: "Normans" for
    "Norman", "England" for "English", "Super Bowl" for "Superbowl"; a number and a year only as written
    (1000 may be 1,000)."""
    if constraint in text:
        return True
    if constraint.isdigit() and len(constraint) > 3:
        return f"{int(constraint):,}" in text
    if HAN_RUN.fullmatch(constraint):  # a longer Chinese name: any two of its characters in a row
        return len(constraint) > 2 and any(constraint[i:i + 2] in text for i in range(len(constraint) - 1))
    if constraint.replace("-", "").isalpha():
        word = constraint.replace("-", "")
        return word in text.replace(" ", "").replace("-", "") or (len(word) > 4 and word[:max(4, len(word) - 3)] in text)
    return False


def _plain(text: str) -> str:
    """Lower case without accents: "Schrödinger" and "Schrodinger", "Céloron" and "Celoron" match."""
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


def unmet(question: str, texts: Sequence[str]) -> list[str]:
    """The question's constraints that none of `texts` holds (each a passage with its title). English names
    are often paraphrased ("the Panthers" for "Carolina Panthers", "England" for "English"), so in a question
    naming MANY_NAMES or more they count only when most are missing; numbers, years, quoted titles and Chinese names always count."""
    joined = _plain("\n".join(texts))
    wanted = {_plain(c) for c in constraints(question)}
    missing = sorted(c for c in wanted if not _holds(joined, c))
    names = {c for c in wanted if _is_english_name(c)}
    if len(names) >= MANY_NAMES and 2 * len(names & set(missing)) <= len(names):
        missing = [c for c in missing if c not in names]
    return missing


def _is_english_name(c: str) -> bool:
    return c.replace("-", "").isalpha() and c.isascii() and " " not in c
