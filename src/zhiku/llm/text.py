"""Turn a stream of token bytes into clean text pieces, honouring stop strings.

Shared by the in-process backends (llama.cpp, chatglm.cpp): bytes are decoded incrementally so a
multi-byte character split across tokens is never emitted half-done, and text that might be the start
of a stop string is held back until it is known not to be one, so a stop string never leaks out.
"""

from __future__ import annotations

import codecs
from typing import Any

from zhiku.cjk import CJK_CHAR


class StopText:
    def __init__(self, stop: list[str]) -> None:
        self._stop = [s for s in stop if s]
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""
        self.stopped = False

    def feed(self, data: bytes | str) -> str:
        """Add one token's bytes (or text); return the text that is now safe to emit."""
        if self.stopped:
            return ""
        self._held += self._decoder.decode(data) if isinstance(data, bytes) else data
        if not self._stop:
            out, self._held = self._held, ""
            return out
        cut = min((i for i in (self._held.find(s) for s in self._stop) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            out, self._held = self._held[:cut], ""
            return out
        keep = self._partial_stop_len(self._held)
        out = self._held[: len(self._held) - keep]
        self._held = self._held[len(out):]
        return out

    def flush(self) -> str:
        """The end of generation: whatever is held back is real text after all."""
        if self.stopped:
            return ""
        out = self._held + self._decoder.decode(b"", final=True)
        self._held = ""
        return out

    def _partial_stop_len(self, text: str) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
        best = 0
        for s in self._stop:
            for n in range(min(len(s) - 1, len(text)), best, -1):
                if text.endswith(s[:n]):
                    best = n
                    break
        return best


def message_text(content: Any) -> str:
    """OpenAI message content is a string, None, or a list of parts; the text parts are joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate for backends whose tokenizer lives elsewhere (an upstream server):
    one token per CJK character, about four characters per token otherwise."""
    cjk = len(CJK_CHAR.findall(text))
    return cjk + (len(text) - cjk + 3) // 4
