"""Which model answers a knowledge-base question: the fast default pack first, the stronger pack when it matters.

The rule (setting `answer_quality`):
- ``fast``: the default model answers; an answer the check cannot confirm becomes the refusal.
- ``balanced`` (default): the default model answers first; when its answer is refused by itself or not
  confirmed by the check at the stricter bar `CONFIRM_ANCHOR`, or when the question has several parts, the
  stronger pack (`strong_model`, qwen2.5-coder-1.5b) answers instead, if it is installed; its answer is
  checked at `answer_check_anchor`, and refused below it.
- ``best``: the stronger pack answers every knowledge-base question (the default model when it is missing).

The stronger pack is loaded on first need and stays loaded. It is only used with the llama.cpp backend (an
OpenAI-compatible upstream chooses its own model).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from zhiku import packs
from zhiku.config import Settings

if TYPE_CHECKING:
    from zhiku.llm.service import LLMService


# The 0.5B model copies a plausible span from a same-topic distractor with anchoring 0.5-0.6 as often as it
# answers right there (SQuAD dev, 69 distractor-only prompts: 0.5 refuses 0.67 of them, 0.55 refuses 0.81, at
# a cost of 0.06 of right answers); when the stronger pack can be asked, that doubt is its to settle.
CONFIRM_ANCHOR = 0.55


def available(settings: Settings) -> bool:
    """Whether a stronger pack can take over here."""
    s = settings
    if s.answer_quality == "fast" or s.llm_backend != "llama_cpp" or not s.strong_model:
        return False
    if s.strong_model == s.model or s.strong_model not in packs.PACKS:
        return False
    return packs.installed(s.models_path, s.strong_model)


def plan(settings: Settings, kind: str, strong: bool) -> list[str]:
    """The models to try in order: "main" (the default model) and/or "strong" (see the module doc)."""
    if not strong or settings.answer_quality == "fast":
        return ["main"]
    if settings.answer_quality == "best" or kind == "multi":
        return ["strong"]
    return ["main", "strong"]


class StrongModel:
    """The stronger pack's LLMService, built and loaded on first use (thread-safe)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._llm: LLMService | None = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        """The service, or None when no stronger pack can take over (`available`)."""
        if not available(self.settings):
            return None
        with self._lock:
            if self._llm is None:
                from zhiku.llm.service import LLMService

                self._llm = LLMService(self.settings.model_copy(update={"model": self.settings.strong_model}))
            return self._llm

    def close(self) -> None:
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None


_SHARED: dict[tuple[str, str, int, int], StrongModel] = {}


def shared(settings: Settings) -> StrongModel:
    """One StrongModel per (models folder, pack, context, threads) for callers without a ChatService (`zhiku eval
    answers --live`), so the stronger pack is loaded once per run, not once per question."""
    key = (str(settings.models_path), settings.strong_model, settings.ctx, settings.threads)
    if key not in _SHARED:
        _SHARED[key] = StrongModel(settings)
    return _SHARED[key]
