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
