"""Background embedding: the chunks an ingestion committed without vectors, embedded from the queue the
store keeps in the database (kb/store.py: the chunks without a vector).

A part of KBService with its own state (a worker thread, the speed it measured). The worker takes a batch
of one knowledge base at a time (`Store.claim_pending`), embeds it with the base's embedder and stores the
vectors in one transaction; it sleeps when no base waits and wakes when an ingestion queues chunks (or
every POLL_SECONDS, for chunks queued by another process). A restart finds the queue where the last
process left it. The embedders keep to the cores generation leaves free while chat decodes (llm/cores.py,
through embed/parallel.py), and the worker rests between batches meanwhile, so chat stays usable while a
big base embeds.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from zhiku.embed.batching import preferred_batch
from zhiku.errors import ZhikuError
from zhiku.kb.core import KBContext
from zhiku.kb.store import KBRecord
from zhiku.kb.types import KBNotFound, Progress
from zhiku.llm.cores import CORES

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0  # how often an idle worker looks for chunks queued by another process
RETRY_SECONDS = 10.0  # after a failure (an embedder that cannot load, a database away)
REST_MAX_SECONDS = 10.0  # the longest rest after a batch while a chat decodes


@dataclass
class EmbeddingStatus:
    embedded: int
    total: int
    eta_seconds: float | None = None  # from the last measured speed, when one is known

    @property
    def complete(self) -> bool:
        return self.embedded >= self.total

    def text(self) -> str:
        """'embedding 1,240 / 5,000 chunks, ~4 min left' (or 'embedded' when complete)."""
        if self.complete:
            return "embedded"
        out = f"embedding {self.embedded:,} / {self.total:,} chunks"
        if self.eta_seconds is not None:
            minutes = self.eta_seconds / 60
            out += f", ~{max(1, round(minutes))} min left" if minutes >= 1 else ", <1 min left"
        return out


class EmbeddingQueue:
    def __init__(self, ctx: KBContext) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        self.last_error: str | None = None

    # ---- the worker ------------------------------------------------------------------------------

    def start(self) -> None:
        """Run the worker in this process (a server does; a CLI command that returns at once does not)."""
        with self._guard:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._loop, name="zhiku-embed", daemon=True)
                self._thread.start()

    def wake(self) -> None:
        """Chunks were queued: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the batch under way (its vectors are stored, or it is embedded again on restart)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                done = self.run_once()
                self.last_error = None
            except Exception as e:  # the queue stays in the database; try again later
                if isinstance(e, ZhikuError):  # the database down, a full disk: one line, not a traceback
                    log.warning("background embedding failed (%s); retrying in %.0f s", e.message, RETRY_SECONDS)
                else:
                    log.exception("background embedding failed; retrying in %.0f s", RETRY_SECONDS)
                self.last_error = f"{type(e).__name__}: {e}"
                self._stop.wait(RETRY_SECONDS)
                continue
            if not done:
                self._wake.wait(POLL_SECONDS)
                self._wake.clear()

    def run_once(self) -> int:
        """One batch of every knowledge base that has chunks waiting; returns the chunks stored. While a chat
        decodes, the worker rests after each batch for as long as the batch took: generation then has every
        core half the time (the core-sharing policy alone left decode at 0.26x idle on a loaded box)."""
        stored = 0
        for kb in self.store.waiting_kbs():
            if self._stop.is_set():
                break
            started = time.perf_counter()
            stored += self.embed_batch(kb)
            if CORES.generating:
                self._stop.wait(min(REST_MAX_SECONDS, time.perf_counter() - started))
        return stored

    def embed_batch(self, kb: KBRecord, size: int | None = None) -> int:
        """Embed and store one batch (the embedder's preferred size) of the knowledge base's waiting chunks;
        0 when none could be taken (none left, or another process holds them)."""
        emb = self.ctx.kb_embedder(kb)
        with self.store.claim_pending(kb, size or preferred_batch(emb)) as batch:
            if batch is None:
                return 0
            started = time.perf_counter()
            stored = batch.save(emb.embed_passages(batch.texts))
            seconds = time.perf_counter() - started
        if stored:
            self.store.set_rate(kb, stored / max(seconds, 1e-6))
            if not self.store.waiting_count(kb):
                try:
                    self.store.prepare(kb)  # the ANN index, now that every vector is in
                except KBNotFound:  # deleted meanwhile
                    pass
        return stored

    # ---- waiting and status ----------------------------------------------------------------------

    def drain(self, name: str, progress: Progress | None = None, poll: float = 0.5) -> int:
        """Embed the knowledge base's waiting chunks here (or wait while another process does) until every
        chunk has its vector; progress("embedded", done, total) after each batch. Returns the number of
        chunks embedded by this call."""
        here = 0
        while True:
            kb = self.ctx.record(name)
            status = self.status(name)
            if progress is not None:
                progress("embedded", status.embedded, status.total)
            if status.complete:
                return here
            stored = self.embed_batch(kb)
            here += stored
            if not stored:
                time.sleep(poll)  # the rest is being embedded by another worker

    def status(self, name: str) -> EmbeddingStatus:
        kb = self.ctx.record(name)
        waiting, total = self.store.waiting_count(kb), self.store.counts(kb)[1]
        rate = self.store.rate(kb) if waiting else None
        return EmbeddingStatus(total - waiting, total, waiting / rate if rate else None)

    def embedded_share(self, kb: KBRecord) -> float:
        """The share of the base's chunks that have a vector (1.0 at once when none waits: one index probe)."""
        if not (waiting := self.store.waiting_count(kb)):
            return 1.0
        return max(0.0, 1.0 - waiting / max(1, self.store.counts(kb)[1]))
