"""Question kinds built from a single-span set (SQuAD, CMRC), deterministic for a seed.

- ``two-part``: two questions about one paragraph joined into one ("A? Also, B?" / "A？另外，B"); right only
  when both answers are in the reply. One pair per paragraph, the pair chosen by a seeded draw among the
  paragraph's questions whose answers do not overlap.
- ``counterfactual``: the year, another number or the named entity a question asks about is changed so
  that its gold paragraph no longer answers it; the right reply with that paragraph is a refusal. A change is
  kept only when it is real: the original value is in the paragraph (the question's constraint is one the
  paragraph speaks to) and the new one is not. The question's years move by 1–7 years; without a year its
  other numbers move by 1–9; without either, a name (English: a capitalised run; Chinese: a 《title》) is
  swapped for a name another paragraph of the same article mentions: a same-topic change, never an
  unrelated word.

Build kinds from one half of a set (`datasets.split`) so that dev and test never share a question.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from zhiku.eval.datasets import Dataset, Question
from zhiku.eval.metrics import normalize_answer

KINDS = ("single", "two-part", "counterfactual")
_YEAR = re.compile(r"(?<![\d.])(1[5-9]\d\d|20\d\d)(?![\d.])")
_NUMBER = re.compile(r"(?<![\d.,])(\d+)(?![\d.,]\d)")
_NAME = re.compile(r"(?<=\S )([A-Z][\w'’-]+(?: (?:of |the |de )?[A-Z][\w'’-]+)*)")
_ZH_NAME = re.compile(r"《([^》]{2,30})》")
_CALENDAR = {"January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
             "November", "December", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}
_EN_LOWER_FIRST = {"what", "who", "when", "where", "which", "why", "how", "in", "on", "at", "during", "the",
                   "whom", "whose", "after", "before", "from", "for", "is", "was", "are", "were", "did", "does"}


def derive(kind: str, dataset: Dataset, questions: Sequence[Question], seed: int = 0) -> list[Question]:
    if kind == "single":
        return list(questions)
    if kind == "two-part":
        return two_part(dataset, questions, seed)
    if kind == "counterfactual":
        return counterfactual(dataset, questions, seed)
    raise ValueError(f"unknown question kind {kind!r}; use {', '.join(KINDS)}")


def _overlap(a: Sequence[str], b: Sequence[str], language: str) -> bool:
    def norm(s: str) -> str:
        return "".join(s.lower().split()) if language == "zh" else normalize_answer(s)
    return any(x and y and (x in y or y in x) for x in map(norm, a) for y in map(norm, b))


def join(first: str, second: str, language: str) -> str:
    """One question asking both."""
    if language == "zh":
        return f"{first.strip().rstrip('？?。')}？另外，{second.strip()}"
    word = second.split(" ", 1)[0]
    if word.lower() in _EN_LOWER_FIRST:
        second = word.lower() + second[len(word):]
    return f"{first.strip().rstrip('?')}? Also, {second.strip()}"


def two_part(dataset: Dataset, questions: Sequence[Question], seed: int = 0) -> list[Question]:
    by_paragraph: dict[str, list[Question]] = {}
    for q in questions:
        if q.answers and len(q.gold_ids) == 1:
            by_paragraph.setdefault(q.gold_ids[0], []).append(q)
    out = []
    for pid, qs in by_paragraph.items():
        pairs = [(a, b) for i, a in enumerate(qs) for b in qs[i + 1:]
                 if not _overlap(a.answers, b.answers, dataset.language)]
        if not pairs:
            continue
        a, b = random.Random(f"{seed}:{pid}").choice(pairs)
        out.append(Question(f"{a.id}+{b.id}", join(a.question, b.question, dataset.language),
                            list(dict.fromkeys(a.answers + b.answers)), [pid], parts=[a.answers, b.answers],
                            kind="two-part"))
    return out


def _in(value: str, text: str, numeric: bool) -> bool:
    if numeric:
        return re.search(rf"(?<!\d){re.escape(value)}(?!\d)", text) is not None
    return value.lower() in text.lower()


def _changes(q: Question, paragraph: str, names_nearby: Sequence[str], language: str,
             rng: random.Random) -> list[tuple[str, str]]:
    """(old, new) values the question could change, each real for this paragraph: its years, else its other
    numbers, else a name, swapped for a name of the same article that this paragraph does not mention."""
    years = sorted(set(_YEAR.findall(q.question)))
    out = []
    for y in years:
        moves = [d for d in range(-7, 8) if d and not _in(str(int(y) + d), paragraph, True)]
        if _in(y, paragraph, True) and moves:
            out.append((y, str(int(y) + rng.choice(moves))))
    if out:
        return out
    for n in sorted(set(_NUMBER.findall(q.question)) - set(years)):
        moves = [d for d in range(1, 10) if not _in(str(int(n) + d), paragraph, True)]
        if _in(n, paragraph, True) and moves and not n.startswith("0"):
            out.append((n, str(int(n) + rng.choice(moves))))
    if out:
        return out
    fresh = [m for m in names_nearby if not _in(m, paragraph, False) and m.lower() not in q.question.lower()]
    for name in _names(q.question, language):
        if fresh and _in(name, paragraph, False):
            out.append((name, rng.choice(fresh)))
    return out


def _names(text: str, language: str) -> list[str]:
    """Named entities, roughly: book-title marks in Chinese, capitalised runs after the first word in English."""
    found = _ZH_NAME.findall(text) if language == "zh" else _NAME.findall(text)
    found = [re.sub(r"['’]s?$", "", n) for n in found]
    return list(dict.fromkeys(n for n in found if len(n) >= 2 and n not in _CALENDAR))


def _replace(question: str, old: str, new: str, numeric: bool) -> str:
    if numeric:
        return re.sub(rf"(?<!\d){re.escape(old)}(?!\d)", new, question)
    return re.sub(re.escape(old), new.replace("\\", "\\\\"), question, flags=re.IGNORECASE)


def counterfactual(dataset: Dataset, questions: Sequence[Question], seed: int = 0) -> list[Question]:
    by_id = dataset.corpus_by_id()
    names: dict[str, list[str]] = {}  # article title -> the names its paragraphs mention
    for c in dataset.corpus:
        names.setdefault(c.title, []).extend(_names(c.text, dataset.language))
    out = []
    for q in questions:
        if len(q.gold_ids) != 1 or q.gold_ids[0] not in by_id:
            continue
        item = by_id[q.gold_ids[0]]
        rng = random.Random(f"{seed}:{q.id}")
        nearby = sorted(set(names.get(item.title, [])))
        changes = _changes(q, item.text, nearby, dataset.language, rng)
        if not changes:
            continue
        old, new = rng.choice(changes)
        numeric = old.isdigit()
        text = _replace(q.question, old, new, numeric)
        if text == q.question or _in(new, item.text, numeric):
            continue
        out.append(Question(f"{q.id}~cf", text, [], list(q.gold_ids), kind="counterfactual",
                            note=f"{old} -> {new}"))
    return out
