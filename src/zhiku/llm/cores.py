"""Cores shared on purpose between generation and ingestion (embedding), one policy for the process.

Measured on the 2-core box: with an ingestion embedding on both cores, 2-thread llama.cpp decoding fell
from 22 to 0.6-3 tok/s (its threads wait at barriers for a descheduled partner), while 1 thread kept
9 tok/s. So while both run, each keeps to its own share of the cores: generation gets half (at least
one), ingestion the rest (at least one); when only one of them runs it has every core it was given.
`share_cores = false` turns the policy off (both use their configured threads, as before).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class CoreShare:
    def __init__(self, cores: int | None = None) -> None:
        self.cores = cores or os.cpu_count() or 1
        self.enabled = True
        self._lock = threading.Lock()
        self._generating = 0
        self._ingesting = 0

    @property
    def generating(self) -> bool:
        return self._generating > 0

    @property
    def ingesting(self) -> bool:
        return self._ingesting > 0

    def generation(self, busy: bool) -> None:
        """An engine reports that it started (True) or stopped (False) having sequences to run."""
        with self._lock:
            self._generating = max(0, self._generating + (1 if busy else -1))

    @contextmanager
    def ingestion(self) -> Iterator[None]:
        with self._lock:
            self._ingesting += 1
        try:
            yield
        finally:
            with self._lock:
                self._ingesting -= 1

    def generation_share(self) -> int:
        return max(1, (self.cores + 1) // 2)

    def generation_threads(self, configured: int) -> int:
        if self.enabled and self.ingesting:
            return max(1, min(configured, self.generation_share()))
        return configured

    def ingestion_workers(self, configured: int) -> int:
        if self.enabled and self.generating:
            return max(1, min(configured, self.cores - self.generation_share()))
        return configured


CORES = CoreShare()
