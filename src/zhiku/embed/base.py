"""The Embedder protocol: texts in, L2-normalised float32 rows out."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

from zhiku.errors import ZhikuError

Vectors = npt.NDArray[np.float32]
T = TypeVar("T")


@runtime_checkable
class Embedder(Protocol):
    # Read-only, so that an implementation may find its dimension lazily (a model folder, an upstream).
    @property
    def id(self) -> str:
        """Stable identifier recorded on each knowledge base, e.g. "e5-small" (see registry.embedder_id)."""
        ...

    @property
    def dim(self) -> int: ...

    def embed_passages(self, texts: list[str]) -> Vectors:
        """(len(texts), dim) float32, each row L2-normalised."""
        ...

    def embed_queries(self, texts: list[str]) -> Vectors: ...


class EmbedderError(ZhikuError):
    """An embedder could not be built or could not embed (bad spec, missing file, upstream failure)."""

    code = "embedder_error"


class Lazy(Generic[T]):
    """A model built on first use, once even when several threads ask at once: weights are read when first
    needed, not at construction, so listing or creating a knowledge base never pays for them."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._value: T | None = None

    def __call__(self) -> T:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
        return self._value


def l2_normalise(rows: npt.ArrayLike, dim: int | None = None) -> Vectors:
    """Rows as C-contiguous float32 with unit L2 norm; an all-zero row stays zero instead of NaN."""
    arr = np.ascontiguousarray(rows, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1) if arr.size else arr.reshape(0, dim or 0)
    if dim is not None and arr.shape[1] != dim:
        raise EmbedderError(f"embedder returned {arr.shape[1]}-d vectors, expected {dim}")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    np.maximum(norms, np.float32(1e-12), out=norms)
    out: Vectors = (arr / norms).astype(np.float32, copy=False)
    return out
