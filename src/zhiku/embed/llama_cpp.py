"""A GGUF embedding model through llama.cpp (`gguf:<file or model pack>`).

The pooling the model declares in its metadata is used (BERT-style embedding GGUFs declare mean or CLS);
a model that declares none (a chat model) is mean-pooled so that every GGUF yields one vector per text.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from zhiku.embed.base import EmbedderError, Vectors, l2_normalise
from zhiku.llm.llama_cpp import closed_at_exit

# Tokens per text; longer texts are truncated. Knowledge-base chunks (500 characters) fit well within it.
N_CTX = 1024


class LlamaCppEmbedder:
    batch_size = 16

    def __init__(self, path: Path, embedder_id: str, threads: int = 0, n_ctx: int = N_CTX) -> None:
        if not path.is_file():
            raise EmbedderError(f"GGUF embedding model not found: {path}")
        self.path = path
        self.id = embedder_id
        self.threads = threads or os.cpu_count() or 1
        self.n_ctx = n_ctx
        self._lock = threading.Lock()
        self._llm: Any = None
        self._dim = 0

    def _load(self) -> Any:
        with self._lock:
            if self._llm is None:
                import llama_cpp

                try:
                    meta = llama_cpp.Llama(str(self.path), vocab_only=True, verbose=False).metadata
                    arch = meta.get("general.architecture", "")
                    pooling = (llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED if f"{arch}.pooling_type" in meta
                               else llama_cpp.LLAMA_POOLING_TYPE_MEAN)
                    llm = llama_cpp.Llama(
                        str(self.path), embedding=True, pooling_type=pooling, n_ctx=self.n_ctx,
                        n_batch=self.n_ctx, n_ubatch=self.n_ctx, n_threads=self.threads,
                        n_threads_batch=self.threads, verbose=False)
                except (ValueError, RuntimeError) as exc:
                    raise EmbedderError(f"cannot load GGUF embedding model {self.path}: {exc}") from exc
                self._dim = int(llm.n_embd())
                self._llm = closed_at_exit(llm)
            return self._llm

    @property
    def dim(self) -> int:
        self._load()
        return self._dim

    def _encode(self, texts: list[str]) -> Vectors:
        llm = self._load()
        if not texts:
            return np.empty((0, self._dim), dtype=np.float32)
        with self._lock:  # one llama.cpp context: calls must not interleave
            rows = llm.embed(list(texts), normalize=False, truncate=True)
        return l2_normalise(rows, self._dim)

    def embed_passages(self, texts: list[str]) -> Vectors:
        return self._encode(texts)

    def embed_queries(self, texts: list[str]) -> Vectors:
        return self._encode(texts)

    def close(self) -> None:
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None
