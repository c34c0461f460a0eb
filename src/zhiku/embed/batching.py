"""Embedding many texts with progress, at the embedder's full speed."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from zhiku.embed.base import Embedder, Vectors

Progress = Callable[[int, int], None]  # (texts done, texts total)
DEFAULT_BATCH = 32


def preferred_batch(embedder: Embedder) -> int:
    """Texts per call at which the embedder reaches full throughput (its `batch_size`, if it says)."""
    return int(getattr(embedder, "batch_size", DEFAULT_BATCH) or DEFAULT_BATCH)


def embed_in_batches(embedder: Embedder, texts: list[str], batch_size: int | None = None,
                     progress: Progress | None = None) -> Vectors:
    """Passage vectors for `texts`, (len(texts), dim) float32, reporting progress after every batch.

    Each embedder spreads one batch over all cores itself (e5-small and use-m3: one single-threaded call
    per core on a shard of the batch; llama.cpp and torch: their multi-threaded kernels), so batches run
    one after another; a batch only needs to give every core a big enough share, which the embedder's
    `batch_size` does.
    """
    size = max(1, batch_size or preferred_batch(embedder))
    total = len(texts)
    if progress:
        progress(0, total)
    parts: list[Vectors] = []
    for start in range(0, total, size):
        parts.append(embedder.embed_passages(texts[start:start + size]))
        if progress:
            progress(min(start + size, total), total)
    if not parts:
        return np.empty((0, embedder.dim), dtype=np.float32)
    return np.concatenate(parts)


def raw_throughput(embedder: Embedder, texts: list[str], batch_size: int | None = None,
                   warmup: int = 4) -> dict[str, float]:
    """Passages per second of the embedder alone on `texts` (the baseline for the KB ingestion benchmark).

    The first `warmup` texts are embedded once before timing, so model loading is not counted.
    """
    if warmup and texts:
        embedder.embed_passages(texts[:warmup])
    start, cpu_start = time.perf_counter(), time.process_time()
    embed_in_batches(embedder, texts, batch_size)
    seconds = max(time.perf_counter() - start, 1e-9)
    cpu = time.process_time() - cpu_start  # all threads of this process: cores kept busy = cpu / wall
    n = max(len(texts), 1)
    return {"passages": len(texts), "seconds": seconds, "passages_per_s": len(texts) / seconds,
            "chars_per_s": sum(len(t) for t in texts) / seconds, "cores_busy": cpu / seconds,
            "cpu_ms_per_passage": 1000 * cpu / n}  # the work per passage: comparable on a busy machine
