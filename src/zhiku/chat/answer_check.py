"""The answer check: is a knowledge-base answer stated by the passages as the answer to the question?

A 0.5B model given only distractors rarely refuses: it copies a plausible span. Two signals, both judged by
`zhiku eval answers` on the dev halves of SQuAD and CMRC (README, "Answer quality"):

- **anchoring** (free, no model call): the answer is looked up in the passages, and the share of the
  question's terms in the sentences around it is measured. A question is asked about the sentence that
  answers it, so the answer's own sentence restates most of the question; a span copied from a distractor
  sits among other words. Below `answer_check_anchor` (or when no sentence holds the answer) the answer is
  not taken as stated.
- **the model's own verdict**: the conversation continues with "does the context state that this is the
  answer? yes or no", and P(yes) is read from the first-token log-probabilities. The check's prompt starts
  with the answer's prompt and the answer, so the batching engine reuses their KV (prefix cache). Measured,
  the 0.5B model's P(yes) barely told gold from distractor passages, so it is off by default
  (`answer_check_p = 0`); the evaluation still logs it.

- **constraints** (free): the numbers, years, versions and named entities of the question must be held by
  the passages the answer rests on, or their titles (chat/constraints.py): a same-topic distractor about
  another year or figure shares the question's words but not these.

An answer of several statements (parts, list items, steps) is judged by its statements: anchoring is the best
of theirs, and the passages it rests on are those holding any of them. Statements no passage holds (an invented
step, padding) do not refute the answer, but with quality "balanced" they send it to the stronger pack.

A failed check makes the reply the no-answer reply, or (quality "balanced") hands the question to the
stronger model (kb_chat.py, escalation.py); every passage is then shown as searched.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from zhiku.chat import citations, constraints
from zhiku.chat.types import closing
from zhiku.cjk import HAN_CHAR
from zhiku.llm.base import GenerationParams

QUESTION = {
    "en": "Does the context above state that this is the answer to the question? Reply yes or no.",
    "zh": "上面的上下文是否明确写出了这个问题的这个答案？只回答“是”或“否”。",
}
YES = ("yes", "Yes", "是")
NO = ("no", "No", "否")


@dataclass
class Verdict:
    anchor: float  # anchoring of the answer in the passages (0: no sentence holds it)
    p_yes: float | None  # the model's P(yes), when it was asked
    answer: str  # the answer that was checked
    unmet: list[str] = field(default_factory=list)  # constraints of the question its passages do not hold
    unsupported: list[str] = field(default_factory=list)  # statements no passage holds (padding, invented steps)

    def passes(self, min_anchor: float, min_p: float) -> bool:
        return not self.unmet and self.anchor >= min_anchor and (self.p_yes is None or self.p_yes >= min_p)


def check_messages(messages: list[dict[str, Any]], answer: str, language: str) -> list[dict[str, Any]]:
    return [*messages, {"role": "assistant", "content": answer},
            {"role": "user", "content": QUESTION.get(language, QUESTION["en"])}]


def p_yes(logprobs: dict[str, float]) -> float:
    """P(yes) normalised over the yes and no words (a sum over their spellings)."""
    yes = sum(math.exp(logprobs[w]) for w in YES if w in logprobs)
    no = sum(math.exp(logprobs[w]) for w in NO if w in logprobs)
    return yes / (yes + no) if yes + no > 0 else 0.5


def from_text(text: str) -> float:
    """The verdict from a sampled word, for backends that report no log-probabilities."""
    word = text.strip().lower()
    return 0.0 if word.startswith(("no", "否", "不")) else 1.0


async def ask_model(llm: Any, messages: list[dict[str, Any]], answer: str, language: str,
                    model: str | None = None) -> float:
    """The model's P(yes) that the context of `messages` states `answer` (`llm`: the chat layer's LLM)."""
    params = GenerationParams(max_tokens=1, temperature=0.0, logprobs_of=YES + NO)
    text, logprobs = "", None
    async with closing(llm.chat(check_messages(messages, answer, language), params, model)) as stream:
        async for d in stream:
            text += d.text
            if d.logprobs is not None:
                logprobs = d.logprobs
    return p_yes(logprobs) if logprobs else from_text(text)


# an English stop needs a space after it ("27.3", "U.S." stay whole); a Chinese one does not
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|(?<=[。！？；])|\n+")


# interrogatives are what a question asks, not what it is about
_ASKING = frozenset({"什么", "多少", "哪里", "哪个", "哪些", "哪一", "为何", "怎么", "怎样", "如何", "是谁", "几个", "几年"})
# blanked before the question's terms are taken: "华堡是哪个品牌" is about 华堡 and 品牌, not the pairs 堡哪, 个品
_INTERROGATIVE = re.compile(r"什么|多少|哪一?[个些里年天位种家部国座条所]?|谁|几[个年月日号次名位种]?|何时|为何|为什么|如何|怎么样?|怎样|是否")
_EXTENSION = re.compile(r"\.\w{1,5}$")
_WORD = re.compile(r"[A-Za-z]+|\d+")
# how a reply opens before it says anything: "根据资料，", "根据已知信息，", "Based on the documents provided, "
_OPENING = re.compile(r"^\s*(?:(?:根据|依据|按照|从)[^，,。：:]{0,12}(?:资料|文档|信息|内容|材料|上下文|文中)[^，,。：:]{0,6}[，,：:]"
                      r"|(?:based on|according to)\b[^,.]{0,80},)\s*", re.IGNORECASE)
_LATIN = re.compile(r"[A-Za-z]{3,}.*[A-Za-z]{3,}", re.S)  # two Latin words: the passage has English in it


def anchoring(answer: str, question: str, passages: Sequence[str], titles: Sequence[str] = (),
              window: int = 2) -> float:
    """How much of the question's content surrounds the answer where the passages hold it: over each run of
    2 x `window` + 1 sentences that holds most of the answer's terms (an answer may span sentences), the
    share of the question's terms found in it or its document's title; the best such run of any passage
    (0 when none holds the answer). A span copied from a
    distractor usually sits among other words than the question's; the answer's own sentence usually
    restates the question."""
    asked = _readable(citations.content_terms(_INTERROGATIVE.sub(" ", question)) - _ASKING, passages)
    terms = _readable(_stated(answer, question, asked, passages), passages)
    numbers = {t for t in terms if t[0].isdigit()}  # a figure must be where the answer was taken from, every one
    if not terms:
        return 0.0
    best = 0.0
    for n, passage in enumerate(passages):
        title = citations.content_terms(_EXTENSION.sub("", titles[n])) if n < len(titles) else set()
        sentences = [s for s in _SENTENCE.split(passage) if s.strip()]
        found = [citations.content_terms(s) for s in sentences]
        for i in range(len(found)):
            near = set().union(*found[max(0, i - window):i + window + 1])
            if len(near & terms) < citations.SUPPORT * len(terms) or not numbers <= near:  # the answer is not here
                continue
            # a question in another language than the passages: where the answer sits cannot be told
            best = max(best, len((near | title) & asked) / len(asked) if asked else 1.0)
    return best


def _readable(asked: set[str], passages: Sequence[str]) -> set[str]:
    """The question's terms in the passages' script: a Chinese question about English documents is anchored by
    its Latin words and numbers alone (none: not at all); Chinese terms count when a passage has Chinese."""
    han = any(HAN_CHAR.search(p) for p in passages)
    latin = any(_LATIN.search(p) for p in passages)
    return {t for t in asked if (han if HAN_CHAR.search(t) else latin or t.isdigit())}


def _stated(answer: str, question: str, asked: set[str], passages: Sequence[str]) -> set[str]:
    """What the answer adds to the question, less its own wording: an opening such as "根据资料，" / "Based on
    the documents, ", the question's own words restated (in Chinese, every run of two or more characters the
    question holds, so "英国的摄政时期是珍·奥斯汀作品…" adds 珍·奥斯汀 and not the pair 期珍), Chinese joints
    (`_joins`) and lower-case English words no passage uses ("was introduced"). Numbers and names always count:
    an invented figure or name must not be anchored."""
    said = _without_echo(_OPENING.sub("", citations.strip_citations(answer)), question)
    terms = citations.content_terms(said) - asked
    used = set().union(*(citations.content_terms(p) for p in passages)) if passages else set()
    chars, wording = set("".join(passages)), _wording(said)
    return {t for t in terms if t in used or not (t in wording or _joins(t, chars))}


def _joins(term: str, chars: set[str]) -> bool:
    """A Chinese term no passage holds whose every character some passage has: a joint between words ("1970年被
    称为": 年被) or a function character (为, 两), not a name the passages never mention."""
    return bool(HAN_CHAR.match(term)) and all(c in chars for c in term)


def _without_echo(answer: str, question: str) -> str:
    """The answer with each longest run of Chinese characters (two or more) that the question holds blanked."""
    out, i = [], 0
    while i < len(answer):
        n = 0
        if HAN_CHAR.match(answer[i]):
            n = 2
            while i + n <= len(answer) and answer[i:i + n] in question:
                n += 1
            n -= 1
        if n >= 2:
            out.append(" ")
            i += n
        else:
            out.append(answer[i])
            i += 1
    return "".join(out)


def _wording(answer: str) -> set[str]:
    """The terms of the answer's lower-case English words (a sentence's capitalised first word included)."""
    out: set[str] = set()
    for sentence in _SENTENCE.split(citations.strip_citations(answer)):
        for n, word in enumerate(_WORD.findall(sentence)):
            if word.islower() or (n == 0 and word[1:].islower()):
                out |= citations.content_terms(word)
    return out


def windows(answer: str, question: str, passages: Sequence[str], titles: Sequence[str] = (),
            window: int = 2) -> list[str]:
    """The runs of 2 x `window` + 1 sentences that hold most of the answer's terms, each with its title:
    where the answer was taken from."""
    terms = citations.content_terms(answer) - citations.content_terms(question)
    out = []
    for n, passage in enumerate(passages):
        sentences = [s for s in _SENTENCE.split(passage) if s.strip()]
        found = [citations.content_terms(s) for s in sentences]
        for i in range(len(found)):
            near = set().union(*found[max(0, i - window):i + window + 1])
            if terms and len(near & terms) >= citations.SUPPORT * len(terms):
                title = titles[n] if n < len(titles) else ""
                out.append(title + "\n" + " ".join(sentences[max(0, i - window):i + window + 1]))
    return out


def judge(answer: str, question: str, passages: Sequence[str], titles: Sequence[str] = ()) -> Verdict:
    """Anchoring and constraints of an answer (without the model's verdict; see the module doc). The
    constraints are looked for where the answer was taken from (windows), else in the passages it rests on."""
    parts = citations.statements(answer) or [answer]
    anchor = max(anchoring(p, question, passages, titles) for p in parts)
    near = [w for p in parts for w in windows(p, question, passages, titles)]
    if not near:
        resting = {i for p in parts if (i := citations.best_passage(p, passages, question)) is not None}
        near = [f"{titles[i] if i < len(titles) else ''}\n{passages[i]}" for i in sorted(resting)]
    unmet = constraints.unmet(question, near) if near else []
    asked = citations.content_terms(question)
    unsupported = [p for p in parts if citations.content_terms(p) - asked
                   and citations.best_passage(p, passages, question, citations.CITE) is None]
    return Verdict(anchor, None, answer, unmet, unsupported)
