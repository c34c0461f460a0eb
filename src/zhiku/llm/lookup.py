"""Prompt lookup: draft the next tokens by finding the text's last few tokens earlier in the text.

KB answers often copy words from the retrieved passages; when the last n tokens generated also occur
in the prompt, the tokens that followed them there are a cheap guess at what comes next. The engine
verifies the guess in the same llama_decode as the other sequences' tokens and keeps only what greedy
sampling would have produced anyway (llama-cpp-python's LlamaPromptLookupDecoding is the same idea).
"""

from __future__ import annotations

NGRAMS = (3, 2)  # longest first: a longer match predicts better; single tokens match too often to help


def draft_tokens(history: list[int], limit: int, ngrams: tuple[int, ...] = NGRAMS) -> list[int]:
    """Up to `limit` tokens that followed the latest earlier occurrence of history's last n tokens."""
    if limit <= 0:
        return []
    end = len(history)
    for n in ngrams:
        if end <= n:
            continue
        tail = history[end - n:]
        # the latest occurrence that still has a token after it (not the tail itself)
        for start in range(end - n - 1, -1, -1):
            if history[start] == tail[0] and history[start:start + n] == tail:
                return history[start + n:start + n + limit]
    return []


class Drafter:
    """One sequence's drafting, its length following how its drafts fare (the text cannot change: the engine
    keeps only what greedy sampling picks). Verifying k draft rows is not free: on the 2-core machines zhiku is
    measured on, a decode of 1 + k rows cost 1.3-1.5x one row for k = 1 and about 4x for k = 8 (both packs,
    busy cores), so a draft pays only when much of it is taken. A draft at least half taken doubles the next
    one (up to `most`); one taken less than half sizes the next to what was taken; one not taken at all
    shrinks to one token and pauses drafting for 1, 2, 4 ... (at most PAUSE_MAX) steps, until a token is
    taken again. Deterministic: the same tokens give the same drafts, whatever the timing."""

    START = 4
    PAUSE_MAX = 16

    def __init__(self, most: int) -> None:
        self.most = most
        self.size = min(self.START, most)
        self.pause = 0
        self._misses = 0

    def propose(self, history: list[int], limit: int) -> list[int]:
        if limit <= 0:
            return []
        if self.pause > 0:
            self.pause -= 1
            return []
        return draft_tokens(history, min(limit, self.size))

    def update(self, drafted: int, accepted: int) -> None:
        if drafted <= 0:
            return
        if accepted == 0:
            self.size = 1
            self._misses += 1
            self.pause = min(2 ** (self._misses - 1), self.PAUSE_MAX)
            return
        self._misses = 0
        self.size = min(self.most, 2 * self.size) if 2 * accepted >= drafted else accepted
