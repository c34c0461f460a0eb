"""Spreading one batch over the cores: one single-threaded call per core on a shard of the texts.

Measured on the 2-core box (see README, `zhiku bench embed`): letting a library parallelise inside one
call (OpenMP in the e5 engine, OpenBLAS in use-m3's numpy) costs CPU time in fork/join and spin-waiting,
and when the machine is busy a thread that waits at a barrier for a descheduled partner wastes its core
(use-m3 with 2 BLAS threads spent 4x the CPU per passage of 1 thread on a loaded box). Independent
single-threaded calls never wait on each other, so they keep every core doing useful work.
While chat generates, a batch keeps to the cores generation leaves free (llm/cores.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from zhiku.embed.base import Vectors
from zhiku.llm.cores import CORES

# Below this many texts per worker, splitting is not worth it: a small call's cost is latency.
MIN_TEXTS_PER_WORKER = 4


def cost(text: str) -> float:
    """Rough token count: SentencePiece vocabularies give about 5 ASCII characters or 1.6 CJK characters per
    token (e5: 101 tokens for 500 English characters, 316 for 500 Chinese ones)."""
    ascii_chars = sum(1 for c in text if c < "\x80")
    return ascii_chars / 5 + (len(text) - ascii_chars) / 1.6 + 2


def shards(texts: list[str], parts: int) -> list[tuple[int, int]]:
    """At most `parts` contiguous, non-empty [start, end) ranges covering `texts`, of about equal cost."""
    n = len(texts)
    if parts <= 1 or n < 2:
        return [(0, n)]
    costs = [cost(t) for t in texts]
    total = sum(costs)
    bounds: list[tuple[int, int]] = []
    start, acc = 0, 0.0
    for i, c in enumerate(costs):
        acc += c
        cuts_left = parts - 1 - len(bounds)
        if cuts_left and acc >= total * (len(bounds) + 1) / parts and n - (i + 1) >= cuts_left:
            bounds.append((start, i + 1))
            start = i + 1
    bounds.append((start, n))
    return [b for b in bounds if b[1] > b[0]]


class ShardPool:
    """Runs `fn` on cost-balanced shards of a batch in `workers` threads (the calls must release the GIL)."""

    def __init__(self, workers: int, name: str) -> None:
        self.workers = max(1, workers)
        self._name = name
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def allowed(self) -> int:
        """Workers this batch may use now: all of them, or what generation leaves free."""
        return CORES.ingestion_workers(self.workers)

    def parts_for(self, n: int) -> int:
        return max(1, min(self.allowed(), n // MIN_TEXTS_PER_WORKER))

    def busy(self) -> Any:
        """Marks embedding under way, so that generation keeps to its share of the cores meanwhile."""
        return CORES.ingestion()

    def map(self, fn: Callable[[list[str]], Vectors], texts: list[str]) -> Vectors:
        with self.busy():
            return self._map(fn, texts)

    def _map(self, fn: Callable[[list[str]], Vectors], texts: list[str]) -> Vectors:
        parts = self.parts_for(len(texts))
        if parts <= 1:
            return fn(texts)
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=self._name)
            pool = self._pool
        futures = [pool.submit(fn, texts[a:b]) for a, b in shards(texts, parts)]
        return np.concatenate([f.result() for f in futures])

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
                self._pool = None
