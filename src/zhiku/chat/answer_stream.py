"""A knowledge-base answer as the model writes it: citations added as each statement ends, a refusal held
back so only the one refusal text reaches the user, and the visible correction of a refuted answer.

- **Citations.** When a statement (a sentence, a list line) ends and cites nothing, the passage that holds
  most of its content (citations.best_passage) is cited as [n] before its final stop: "… 4 pm [2]." A
  statement no passage holds gets no citation.
- **Refusals.** An answer that cannot be opening a refusal (not "The documents…", "I don't…", "根据…",
  "无法…") is shown from its first few characters. One that may is held back until a clause ends, or for at
  most `HOLD_S` after the model's first token: if it refuses ("无法回答", "I don't know"), the rest is held
  too, and a reply that only refuses becomes the one refusal text.
- **Corrections.** An answer the check refutes after it was streamed is followed by a correction: a `delta`
  whose `text` is a visible note (for clients that only append: /v1, Chatchat, the CLI) and whose
  `replace` is the answer from then on (what the web UI shows, what is stored and scored).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from zhiku.chat import citations
from zhiku.chat.types import ChatEvent
from zhiku.cjk import HAN_CHAR

HOLD_S = 0.8  # the first words are held back at most this long after the model's first token
HOLD_CHARS = 24  # ... or until this many characters have come
_CLAUSE_END = re.compile(r"[,，。.!！?？;；:：\n]")
# how a refusal may open; an answer that opens otherwise is shown at once (after OPENER_CHARS characters)
OPENER_CHARS = 6
_OPENER = re.compile(r"(?:the (?:document|context|passage|provided|given|information|knowledge|text|answer)|i\b|i'|"
                     r"sorry|unfortunately|there (?:is|are) no|no\b|none|based on|according to|"
                     r"根据|无法|抱歉|对不起|很抱歉|资料|上下文|文档|没有|不知道|未|已知)", re.IGNORECASE)
_CJK_STOP = "。！？；"
_LATIN_STOP = ".!?;"
CORRECTION = {
    "zh": "\n\n（更正：上面的回答在资料中得不到证实。）\n\n",
    "en": "\n\n(Correction: the documents do not confirm the answer above.)\n\n",
}
RETRY = {
    "zh": "\n\n（上面的回答在资料中得不到证实，改由更强的模型回答：）\n\n",
    "en": "\n\n(The documents do not confirm the answer above; a stronger model answers instead:)\n\n",
}


def correction(note: str, answer: str) -> ChatEvent:
    """A visible note for append-only clients; `replace` is the whole answer from now on."""
    return ChatEvent("delta", {"text": note, "replace": answer})


class Citer:
    """Adds [n] to each finished statement of a streamed answer that cites nothing (see the module doc)."""

    def __init__(self, texts: Sequence[str], numbers: Sequence[int], question: str) -> None:
        self.texts, self.numbers, self.question = list(texts), list(numbers), question
        self.statement = ""  # the current statement, as written so far
        self.held = ""  # a Latin stop that may end the statement (decided by the next character)
        self.line = ""  # the current line, as written so far
        self.code = False  # inside a fenced code block: written as is, never cited (a [n] would break it)

    def _cite(self) -> str:
        s = self.statement
        self.statement = ""
        if not s.strip() or citations.cited_numbers(s) or citations.is_refusal(s):
            return ""
        i = citations.best_passage(s, self.texts, self.question, citations.CITE)
        if i is None:
            return ""
        return ("" if HAN_CHAR.search(s[-1:]) or s[-1:].isspace() else " ") + f"[{self.numbers[i]}]"

    def feed(self, text: str) -> str:
        out: list[str] = []
        for ch in text:
            if self.code or self._on_fence():
                out.append(ch)
                if ch == "\n":
                    self.code ^= self._on_fence()
                    self.line = self.statement = ""
                else:
                    self.line += ch
                continue
            self.line = "" if ch == "\n" else self.line + ch
            if self.held:
                stop, self.held = self.held, ""
                if ch.isspace():
                    out.append(self._cite() + stop + ch)
                    continue
                out.append(stop)
                self.statement += stop
            if ch in _LATIN_STOP:
                self.held = ch
            elif ch in _CJK_STOP:
                out.append(self._cite() + ch)
            elif ch == "\n":
                out.append(self._cite().rstrip() + ch if self.statement.strip() else ch)
            else:
                self.statement += ch
                out.append(ch)
        return "".join(out)

    def close(self) -> str:
        stop, self.held = self.held, ""
        if self.code or self._on_fence():
            return stop
        return self._cite() + stop

    def _on_fence(self) -> bool:
        """Whether the current line opens or closes a code block (```)."""
        return self.line.lstrip().startswith("```")


class Holder:
    """Holds back the first words of an answer until it is clear they are not a refusal (see the module doc)."""

    def __init__(self) -> None:
        self.text = ""  # everything received
        self.sent = 0  # characters of `text` already released
        self.first: float | None = None
        self.refusing = False

    def feed(self, text: str) -> str:
        """What may be shown now."""
        self.text += text
        if self.first is None and text:
            self.first = time.perf_counter()
        if self.refusing:
            return ""
        if self.sent == 0:
            start = self.text.lstrip()
            waited = self.first is not None and time.perf_counter() - self.first >= HOLD_S
            enough = 2 if HAN_CHAR.match(start) else OPENER_CHARS  # two Chinese characters tell as much
            plain = len(start) >= enough and not _OPENER.match(start)  # cannot be a refusal's opening
            if not (plain or waited or len(self.text) >= HOLD_CHARS or _CLAUSE_END.search(self.text)):
                return ""
            if citations.is_refusal(self.text):
                self.refusing = True
                return ""
        out, self.sent = self.text[self.sent:], len(self.text)
        return out

    def rest(self) -> str:
        """What is left at the end (all of it when the answer was taken for a refusal)."""
        out, self.sent = self.text[self.sent:], len(self.text)
        return out
