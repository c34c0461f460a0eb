"""Is a reply right? The verdict the answer targets use (``right``), on top of the official normalisation.

``contains`` (the normalised reference appears in the normalised reply) is kind to replies in full sentences
but wrong two ways: a correct short reply fails when the reference is longer ("14" against CMRC's "14个"),
and a reply that lists every candidate passes. ``right`` fixes both:

1. **A reference, not a longer string.** A number matches only as a whole number (14 is not in 140 or 2014);
   a Chinese reference that is a number and a measure word or unit (14个, 3年, 500米) also matches the number
   alone, unless the reply gives that number another unit (14名); magnitudes (万, 亿) are never dropped. A
   list reference ("Denmark, Iceland and Norway", "甲、乙和丙") matches when every item is in the reply, in
   any order and with any separators.
2. **Parts.** A multi-part question (``parts``: one list of alternatives per part) is right only when every
   part is present (RGB's rule); a single-span question has one part, its reference answers.
3. **No hedging.** *Competing candidates* are spans annotators marked as answers to other questions about
   the passages in the prompt (the pool) that occur in those passages, are of the reference's kind (numeric
   or not), are not in the question and do not overlap a reference. A reply is wrong when it lists a
   competing candidate *beside* the reference (items of one enumeration in one clause: "Broncos or
   Panthers", "甲、乙、丙"), or holds three or more of them anywhere (a copy of the passage rather than an
   answer). A sentence answer naturally carries one or two as detail ("the Broncos beat the Panthers"), so
   they alone do not make it wrong.

``cite_ok``: a right reply cites [n] for every part, a passage that holds that part.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from zhiku.chat.citations import cited_numbers, strip_citations
from zhiku.eval.metrics import cmrc_strip, normalize_answer

# Measure words and units a Chinese number may carry in a reference but not in a correct short reply.
_ZH_UNITS = ("平方公里", "平方米", "公里", "千米", "厘米", "毫米", "公斤", "千克", "小时", "分钟", "世纪",
             "周年", "个月", "多年", "余年", "多", "余", "个", "位", "名", "人", "次", "年", "岁", "种", "件",
             "条", "只", "座", "家", "所", "部", "本", "场", "届", "项", "米", "元", "天", "日", "号", "集",
             "章", "回", "卷", "首", "张", "层", "台", "辆", "架", "艘", "支", "队", "分", "秒", "度", "倍",
             "吨", "克", "册", "篇", "期", "代", "级", "节", "局", "轮", "盘", "枚", "颗", "间", "块", "所")
_ZH_NUMBER_UNIT = re.compile(r"^(\d+(?:\.\d+)?[十百千万亿]*)(" + "|".join(sorted(set(_ZH_UNITS), key=len, reverse=True)) + ")$")
_ZH_LIST = re.compile(r"[、，,;；]|和|及|与|以及")
_EN_LIST = re.compile(r",|;|\band\b")
_DIGIT = re.compile(r"\d")
_CJK = re.compile(r"[\u4e00-\u9fff]")
HEDGE_LIMIT = 3  # competing candidates anywhere in the reply that make it a copy of the passage
_CLAUSE = re.compile(r"[。！？!?；;\n]|\.(?:\s|$)")
_ZH_ITEM = re.compile(r"[,，、/]|或者|或是|或|以及|和|及|与")
_EN_ITEM = re.compile(r",|/|\bor\b|\band\b")
_ZH_EXPLICIT = re.compile(r"[、/]|或|以及|和|及|与")
_EN_EXPLICIT = re.compile(r"/|\bor\b|\band\b")


def _norm(text: str, language: str) -> str:
    if language == "zh":
        return "".join(cmrc_strip(text).split())
    return f" {normalize_answer(text)} "


def _occurs(needle: str, hay: str, language: str, unit: str = "") -> bool:
    """`needle` (normalised) in `hay` (normalised): whole words in English; in Chinese never inside a longer
    number, and, for a bare number standing for number+`unit`, not followed by another unit."""
    if not needle.strip():
        return False
    if language != "zh":
        return f" {needle.strip()} " in hay
    start = hay.find(needle)
    while start >= 0:
        end = start + len(needle)
        before = hay[start - 1] if start else ""
        after = hay[end] if end < len(hay) else ""
        ok = not (needle[0].isdigit() and (before.isdigit() or before == "."))
        ok = ok and not (needle[-1].isdigit() and (after.isdigit() or (after == "." and hay[end + 1:end + 2].isdigit())))
        if ok and unit and after and not hay.startswith(unit, end) and _CJK.match(after) \
                and any(hay.startswith(u, end) for u in _ZH_UNITS):
            ok = False  # 14名 is not 14个
        if ok:
            return True
        start = hay.find(needle, start + 1)
    return False


def _items(reference: str, language: str) -> list[str]:
    """The items of a list reference, each normalised; [] when it is not a list."""
    pattern = _ZH_LIST if language == "zh" else _EN_LIST
    parts = [_norm(p, language).strip() for p in pattern.split(reference)]
    if len(parts) < 2 or any(len(p) < 2 for p in parts):
        return []
    return parts


def holds(reply: str, reference: str, language: str) -> bool:
    """The reply states this reference answer (rules 1 above)."""
    hay = _norm(strip_citations(reply), language)
    ref = _norm(reference, language)
    if not ref.strip():
        return False
    if _occurs(ref, hay, language):
        return True
    if language == "zh" and (m := _ZH_NUMBER_UNIT.match(ref)):
        if _occurs(m.group(1), hay, language, unit=m.group(2)):
            return True
    items = _items(reference, language)
    return bool(items) and all(_occurs(i, hay, language) for i in items)


def holds_any(reply: str, references: Iterable[str], language: str) -> bool:
    return any(holds(reply, r, language) for r in references)


def _numeric(text: str) -> bool:
    return bool(_DIGIT.search(text))


class Pool:
    """Annotated answer spans of a whole set (normalised once), to find the candidates in a prompt."""

    def __init__(self, spans: Iterable[str], language: str) -> None:
        self.language = language
        self.spans = [(s, n) for s in dict.fromkeys(spans) if len((n := _norm(s, language)).strip()) >= 2]

    def candidates_in(self, passages: Sequence[str]) -> list[str]:
        """The spans that occur in the passages (what a reply could pick from)."""
        texts = [_norm(p, self.language) for p in passages]
        return [s for s, n in self.spans if any(n.strip() in t and _occurs(n, t, self.language) for t in texts)]


def competitors(reply: str, parts: Sequence[Sequence[str]], question: str, candidates: Iterable[str],
                language: str) -> list[str]:
    """The competing candidates the reply holds (rule 3 above)."""
    references = [r for part in parts for r in part]
    refs = [_norm(r, language).strip() for r in references]
    numeric = any(_numeric(r) for r in references)
    q = _norm(question, language)
    out: list[str] = []
    for span in candidates:
        s = _norm(span, language).strip()
        if not s or _numeric(span) != numeric or any(s in r or r in s for r in refs if r):
            continue
        if _occurs(s, q, language) or not holds(reply, span, language):
            continue
        if not any(s in o or o in s for o in (_norm(x, language).strip() for x in out)):
            out.append(span)
    return out


def _bare(item: str, spans: Sequence[str], language: str) -> bool:
    """The item is one of `spans` with at most a couple of words (characters) around it."""
    for span in spans:
        if holds(item, span, language):
            rest = _norm(item, language).replace(_norm(span, language).strip(), " ", 1)
            return len(rest.split()) <= 2 if language != "zh" else len(rest.strip()) <= 3
    return False


def listed_beside(reply: str, references: Sequence[str], rivals: Sequence[str], language: str) -> bool:
    """A clause of the reply enumerates a reference and a rival as bare items ("A or B", "A, B, C", "甲、乙"):
    items split at "or", "and", "/", "、", "或", "和" (two or more) or at commas (three or more)."""
    pieces = [p for r in references for p in ([r] + _items(r, language))]
    pattern, explicit = (_ZH_ITEM, _ZH_EXPLICIT) if language == "zh" else (_EN_ITEM, _EN_EXPLICIT)
    for clause in _CLAUSE.split(strip_citations(reply)):
        items = [i for i in pattern.split(clause) if i.strip()]
        if len(items) < 2 or (len(items) < 3 and not explicit.search(clause)):
            continue
        is_ref = [_bare(i, pieces, language) for i in items]
        if any(is_ref) and any(not r and _bare(i, rivals, language) for i, r in zip(items, is_ref, strict=True)):
            return True
    return False


@dataclass(frozen=True)
class Verdict:
    right: bool
    parts_found: float  # share of the parts present
    hedged: bool
    competing: tuple[str, ...]


def judge(reply: str, parts: Sequence[Sequence[str]], language: str, question: str = "",
          candidates: Iterable[str] = ()) -> Verdict:
    """Right when every part is present and the reply does not hedge between candidates."""
    if not parts:
        return Verdict(False, 0.0, False, ())
    found = [holds_any(reply, part, language) for part in parts]
    rivals = competitors(reply, parts, question, candidates, language) if all(found) else []
    references = [r for part in parts for r in part]
    hedged = len(rivals) >= HEDGE_LIMIT or (bool(rivals) and listed_beside(reply, references, rivals, language))
    return Verdict(all(found) and not hedged, sum(found) / len(parts), hedged, tuple(rivals))


def cite_ok(reply: str, parts: Sequence[Sequence[str]], passages: Sequence[str], language: str,
            numbering: Mapping[str, int] | None = None) -> bool:
    """Every part is held by a passage the reply cites as [n]: source n is passage `numbering[n]` (0-based),
    or the n-th passage when no numbering is given."""
    if numbering:
        cited = [passages[numbering[str(n)]] for n in cited_numbers(reply) if str(n) in numbering]
    else:
        cited = [passages[n - 1] for n in cited_numbers(reply) if 0 < n <= len(passages)]
    return bool(cited) and all(any(holds_any(p, part, language) for p in cited) for part in parts)
