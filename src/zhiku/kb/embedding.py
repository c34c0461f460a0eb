"""Background embedding: the chunks an ingestion committed without vectors, embedded from the queue the
store keeps in the database (kb/store.py: the chunks without a vector).

A part of KBService with its own state (a worker thread, the speed it measured). The worker takes a batch
of one knowledge base at a time (`Store.claim_pending`), embeds it with the base's embedder and stores the
vectors in one transaction; it sleeps when no base waits and wakes when an ingestion queues chunks (or
every POLL_SECONDS, for chunks queued by another process). A restart finds the queue where the last
process left it. The embedders keep to the cores generation leaves free while chat decodes (llm/cores.py,
through embed/parallel.py), and the worker rests between batches meanwhile, so chat stays usable while a
big base embeds.

Temporary (file-chat) bases are served like any other while they live; an expired one is passed over (the
expiry sweep deletes it, its queue with it). A rebuild (`start_rebuild`) goes through the same worker:
its batches are embedded with the new embedder into the store's rebuild queue (kb/store.py: Rebuilds)
while search keeps the old vectors, and the batch that completes it switches the base over at once.
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
    embedded: int  # chunks with a vector of the base's embedder (what dense search sees)
    total: int
    eta_seconds: float | None = None  # from the last measured speed, when one is known
    rebuilding: str | None = None  # the embedder a rebuild under way moves to
    rebuilt: int = 0  # chunks with their new vector

    @property
    def complete(self) -> bool:
        """Dense search sees every chunk (a rebuild may still be under way)."""
        return self.embedded >= self.total

    @property
    def settled(self) -> bool:
        """Nothing left for the worker: every chunk embedded, no rebuild under way."""
        return self.complete and self.rebuilding is None

    def text(self) -> str:
        """'embedding 1,240 / 5,000 chunks, ~4 min left' (or 'embedded' when complete); during a rebuild
        'rebuilding with e5-small: 1,240 / 5,000 chunks, ~4 min left'."""
        if self.rebuilding is not None:
            return f"rebuilding with {self.rebuilding}: {self.rebuilt:,} / {self.total:,} chunks{self._eta()}"
        if self.complete:
            return "embedded"
        return f"embedding {self.embedded:,} / {self.total:,} chunks{self._eta()}"

    def _eta(self) -> str:
        if self.eta_seconds is None:
            return ""
        minutes = self.eta_seconds / 60
        return f", ~{max(1, round(minutes))} min left" if minutes >= 1 else ", <1 min left"


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
        now = time.time()
        waiting = {kb.id: kb for kb in [*self.store.waiting_kbs(), *self.store.rebuilds.kbs()]}
        for kb in sorted(waiting.values(), key=lambda k: k.id):
            if self._stop.is_set():
                break
            if kb.expires_at is not None and kb.expires_at <= now:
                continue  # an expired file-chat base: the sweep deletes it with its queue
            started = time.perf_counter()
            stored += self.embed_batch(kb)
            if CORES.generating:
                self._stop.wait(min(REST_MAX_SECONDS, time.perf_counter() - started))
        return stored

    def embed_batch(self, kb: KBRecord, size: int | None = None) -> int:
        """Embed and store one batch (the embedder's preferred size) of the knowledge base's waiting chunks
        (or, while a rebuild is under way, of its chunks without their new vector); 0 when none could be
        taken (none left, or another process holds them)."""
        if (target := self.store.rebuilds.target(kb)) is not None:
            return self._rebuild_batch(kb, target[0], size)
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

    # ---- rebuilds ---------------------------------------------------------------------------------

    def start_rebuild(self, kb: KBRecord, embedder: str) -> None:
        """Queue new vectors for every chunk with `embedder` (which then becomes the base's); one under way
        to the same embedder resumes. The worker (or `drain`) embeds them; search keeps the old ones until
        the switch."""
        self.store.rebuilds.start(kb, embedder, self.ctx.embedder(embedder).dim)
        self.wake()

    def _rebuild_batch(self, kb: KBRecord, embedder: str, size: int | None) -> int:
        emb = self.ctx.embedder(embedder)
        n = size or preferred_batch(emb)
        with self.store.rebuilds.claim(kb, n) as batch:
            stored, seconds, taken = 0, 0.0, 0 if batch is None else len(batch.ids)
            if batch is not None:
                started = time.perf_counter()
                stored = batch.save(emb.embed_passages(batch.texts))
                seconds = time.perf_counter() - started
        if stored:
            self.store.set_rate(kb, stored / max(seconds, 1e-6))
        # Claims go in id order: a short batch (or none) reached the end. Every chunk with its new vector:
        # switch at once (finish checks that in its transaction), then the ANN index for the new vectors.
        if taken < n and self.store.rebuilds.finish(kb):
            log.info("knowledge base '%s' rebuilt with %s", kb.name, embedder)
            try:
                self.store.prepare(kb)
            except KBNotFound:
                pass
        return stored

    # ---- waiting and status ----------------------------------------------------------------------

    def drain(self, name: str, progress: Progress | None = None, poll: float = 0.5, rebuild: bool = False) -> int:
        """Embed the knowledge base's waiting chunks here (or wait while another process does) until every
        chunk has its vector and no rebuild is under way; progress("embedded", done, total) after each
        batch (during a rebuild, or with `rebuild`, progress("chunks", new vectors, total)). Returns the
        number of chunks embedded by this call."""
        here, rebuilding = 0, rebuild
        while True:
            kb = self.ctx.record(name)
            status = self.status(name)
            rebuilding = rebuilding or status.rebuilding is not None
            if progress is not None and rebuilding:  # the last report, after the switch: every chunk done
                progress("chunks", status.total if status.rebuilding is None else status.rebuilt, status.total)
            elif progress is not None:
                progress("embedded", status.embedded, status.total)
            if status.settled:
                return here
            stored = self.embed_batch(kb)
            here += stored
            if not stored:
                time.sleep(poll)  # the rest is being embedded by another worker

    def status(self, name: str) -> EmbeddingStatus:
        kb = self.ctx.record(name)
        waiting, total = self.store.waiting_count(kb), self.store.counts(kb)[1]
        if (target := self.store.rebuilds.target(kb)) is not None:
            rebuilt = self.store.rebuilds.done(kb)
            rate = self.store.rate(kb) if rebuilt < total else None
            return EmbeddingStatus(total - waiting, total, (total - rebuilt) / rate if rate else None,
                                   rebuilding=target[0], rebuilt=rebuilt)
        rate = self.store.rate(kb) if waiting else None
        return EmbeddingStatus(total - waiting, total, waiting / rate if rate else None)

    def embedded_share(self, kb: KBRecord) -> float:
        """The share of the base's chunks that have a vector (1.0 at once when none waits: one index probe)."""
        if not (waiting := self.store.waiting_count(kb)):
            return 1.0
        return max(0.0, 1.0 - waiting / max(1, self.store.counts(kb)[1]))
