"""What an answer rests on: the [n] it cites, whether it is a refusal, and which passages support it.

Small models often cite nothing, or cite [1] out of habit. So a citation counts only when the cited
passage holds the answer's content; where the answer cites nothing that holds, the passages are matched
to the answer's content instead ("attributed"). Under a refusal no passage supports anything: every
source is only "searched". Roles, in the order the source list shows them:

- ``cited``: the answer cites [n] and passage n holds most of the answer's content;
- ``attributed``: not cited, but the passage holds most of the answer's content;
- ``searched``: retrieved and put in the prompt, not shown to support the answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from zhiku.chat.sources import Source, SourceRole
from zhiku.cjk import HAN_RUN

CITED: Final = "cited"
ATTRIBUTED: Final = "attributed"
SEARCHED: Final = "searched"
SUPPORT = 0.6  # share of the answer's (weighted) content a passage must hold to support it
CITE = 0.4  # ... to be cited after a statement of the answer: the passage it rests on, though reworded
NEAR_BEST = 0.8  # ... and at least this share of the best passage's support

_CITATION = re.compile(r"[\[【〔(（]\s*((?:\d{1,3}\s*(?:[,，、;；]|and|-|–)?\s*)+)[\]】〕)）]")
_NUMBER = re.compile(r"\d{1,3}")
# an English stop needs a space after it ("27.3", "U.S." stay whole); a Chinese one does not
_STATEMENT = re.compile(r"(?<=[.!?;])\s+|(?<=[。！？；])|\n+")
_MARKER = re.compile(r"^\s*(?:\d{1,2}[.)、]|[-*•])\s*")  # a list item's number or bullet
_REFUSAL = re.compile(
    r"i don'?t know|i do not know|cannot (?:be )?(?:answer|determine|find)|can'?t answer|unable to "
    r"(?:answer|determine|find)|no (?:relevant )?information|(?:does|do) not (?:contain|mention|provide|say|answer|"
    r"include|specify)|not (?:mentioned|provided|stated|specified|given|found) in|"
    r"(?:is|are|was|were) not (?:mentioned|provided|stated|specified|given)\b|no answer|"
    r"无法回答|不知道|无法确定|无法得知|无法从|没有(?:提到|提及|相关|给出|说明)|未(?:提及|提到|说明|给出)|不包含|并未",
    re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z]+|\d+(?:[.,]\d+)*")
_STOP = frozenset("""a an the of in on at to for from by with and or but is are was were be been being it its this
that these those as which who whom what when where why how than then there their they he she his her him we you
i not no do does did has have had will would can could may might shall should about into over after before
during also such so if answer according passage passages information known question context based""".split())
_CJK_STOP = frozenset("的了是在和与及或也就都而等这那其中为以于对由从被把上下")


def cited_numbers(answer: str) -> list[int]:
    """Passage numbers cited as [1], [1, 2], [1][3], 【2】 or (3), in order of first mention."""
    out: list[int] = []
    for m in _CITATION.finditer(answer):
        for n in _NUMBER.findall(m.group(1)):
            if int(n) not in out:
                out.append(int(n))
    return out


def strip_citations(answer: str) -> str:
    return _CITATION.sub(" ", answer)


def is_refusal(answer: str, no_answer_reply: str = "") -> bool:
    """The answer declines: empty, the configured no-answer reply, or each of its statements says the material
    does not answer (an answer to one part that says another is not covered is no refusal)."""
    text = answer.strip()
    if not text or (no_answer_reply and text == no_answer_reply.strip()):
        return True
    return all(_refuses(s) for s in _STATEMENT.split(text) if strip_citations(s).strip(" .。"))


def _refuses(statement: str) -> bool:
    return bool(_REFUSAL.search(statement))


def _stem(word: str) -> str:
    """A crude English stem, enough to match "ferries" with "ferry" and "leaves" with "leave"."""
    if word[0].isdigit():
        return word
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 4 and word.endswith("es") and word[-3] in "sxz":
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            word = word[:-len(suffix)]
            break
    return word[:-1] if len(word) > 3 and word.endswith("e") else word


def content_terms(text: str) -> set[str]:
    """What an answer says, as comparable units: English words (no stop words) and numbers, and pairs of
    adjacent Chinese characters (single characters carry too little), lower case."""
    text = strip_citations(text).lower()
    terms = {_stem(w) for w in _WORD.findall(text) if w not in _STOP and (len(w) > 1 or w.isdigit())}
    for run in HAN_RUN.findall(text):
        chars = [c for c in run if c not in _CJK_STOP] if len(run) > 2 else list(run)
        if len(chars) == 1:
            terms.add(chars[0])
        terms.update(a + b for a, b in zip(chars, chars[1:], strict=False))
    return terms


def support(answer: str, passages: Sequence[str], question: str = "") -> list[float]:
    """Per passage, the share of the answer's content it holds. Only what the answer adds to the question
    counts (an answer that restates the question is supported by nothing), and terms found in fewer
    passages weigh more (1 / the number of passages holding them), so a passage that alone holds the
    distinctive part of the answer outranks one that merely shares its common words."""
    terms = content_terms(answer) - content_terms(question)
    if not terms or not passages:
        return [0.0] * len(passages)
    held = [content_terms(p) & terms for p in passages]
    weight = {t: 1.0 / max(1, sum(t in h for h in held)) for t in terms}
    total = sum(weight.values())
    return [sum(weight[t] for t in h) / total for h in held]


def searched(sources: Sequence[Source]) -> list[Source]:
    """Every source only searched: what a refusal rests on."""
    return [replace(s, role="searched") for s in sources]


def assign_roles(answer: str, sources: Sequence[Source], texts: Sequence[str], no_answer_reply: str = "",
                 question: str = "") -> list[Source]:
    """The sources (numbered as in the prompt, `texts` their passages) with a role each, supporting ones
    first (cited in citation order, then attributed, strongest first), then the searched ones."""
    if is_refusal(answer, no_answer_reply):
        return searched(sources)
    scores = support(answer, texts, question)
    best = max(scores, default=0.0)
    strong = {i for i, s in enumerate(scores) if s >= SUPPORT and s >= NEAR_BEST * best}
    # an answer of several statements (parts, items, steps) may rest on several passages, one each
    for statement in statements(answer):
        i = best_passage(statement, texts, question)
        if i is not None:
            strong.add(i)
    by_number = {s.index: i for i, s in enumerate(sources)}
    cited = [by_number[n] for n in cited_numbers(answer) if n in by_number and by_number[n] in strong]
    attributed = [] if cited else sorted(strong, key=lambda i: (-scores[i], i))
    roles: dict[int, SourceRole] = {i: "cited" for i in cited}
    roles.update({i: "attributed" for i in attributed})
    order = cited + attributed + [i for i in range(len(sources)) if i not in roles]
    return [replace(sources[i], role=roles.get(i, "searched"), support=round(scores[i], 3)) for i in order]


def statements(answer: str) -> list[str]:
    """The answer's statements: its sentences and list lines, without refusals of a part ("资料没有提到 X")."""
    return [s for s in _STATEMENT.split(answer) if strip_citations(_MARKER.sub("", s)).strip(" .。*#:：")
            and not _refuses(s)]


def best_passage(statement: str, texts: Sequence[str], question: str = "", floor: float = SUPPORT) -> int | None:
    """Index of the passage that holds most of the statement's content, when it holds at least `floor`."""
    scores = support(statement, texts, question)
    best = max(range(len(scores)), key=lambda i: scores[i], default=None)
    return best if best is not None and scores[best] >= floor else None


def supporting(sources: Sequence[Source]) -> list[Source]:
    return [s for s in sources if s.role in (CITED, ATTRIBUTED)]
