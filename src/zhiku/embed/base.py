"""The Embedder protocol: texts in, L2-normalised float32 rows out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    id: str  # stable identifier recorded on each knowledge base, e.g. "e5-small"
    dim: int

    def embed_passages(self, texts: list[str]) -> Vectors:
        """(len(texts), dim) float32, each row L2-normalised."""
        ...

    def embed_queries(self, texts: list[str]) -> Vectors: ...
