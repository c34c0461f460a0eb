"""Share a few generation slots among many requests: a bounded FIFO queue, worker threads, cancel.

Backends are blocking generators; each request runs on a worker thread that owns its slot for the whole
generation and hands deltas to the asking coroutine through an asyncio queue. The event loop never
blocks. Closing the consumer (client gone, task cancelled) sets a flag the worker checks between
tokens, so generation stops within a token and the slot goes to the next request in line. Only
threading primitives hold state, so callers on different event loops (server, CLI, UI) can share it.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from zhiku.llm.base import ChatDelta, QueueFullError

S = TypeVar("S")
_END = object()


@dataclass
class Outcome:
    """What one generation did, for metrics."""

    queued_s: float = 0.0
    ttft_s: float | None = None  # request arrival -> first token
    decode_s: float = 0.0  # first token -> end
    prompt_tokens: int = 0
    completion_tokens: int = 0
    status: str = "ok"  # ok | cancelled | error


@dataclass
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    seq: int = field(default=0)


class SlotPool(Generic[S]):
    """Waiters are served FIFO; at most `queue_size` requests wait, the next one gets QueueFullError."""

    def __init__(self, slots: list[S], queue_size: int) -> None:
        self.size = len(slots)
        self.queue_size = queue_size
        self._free: deque[S] = deque(slots)
        self._waiters: deque[_Waiter] = deque()
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self.busy = 0
        self.mean_hold_s = 5.0  # running estimate of how long a request keeps a slot

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def retry_after(self) -> int:
        """Seconds until a queue place is likely free: the queue drains `size` requests per hold time."""
        return max(1, min(60, round(self.mean_hold_s * (self.waiting + 1) / max(self.size, 1))))

    async def acquire(self) -> S:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free and not self._waiters:
                self.busy += 1
                # the slot freed last: a follow-up request (the next turn of a chat) finds its
                # prompt prefix still in that context's KV cache
                return self._free.pop()
            if len(self._waiters) >= self.queue_size:
                raise QueueFullError(self.retry_after())
            waiter = _Waiter(loop, loop.create_future(), next(self._seq))
            self._waiters.append(waiter)
        try:
            slot: S = await waiter.future
            return slot
        except asyncio.CancelledError:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                    raise
            # a slot was already on its way to us: pass it on
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(waiter.future.result())
            raise

    def release(self, slot: S) -> None:
        """Give the slot to the longest waiter, or back to the free list. Any thread may call it."""
        while True:
            with self._lock:
                if not self._waiters:
                    self._free.append(slot)
                    self.busy -= 1
                    return
                waiter = self._waiters.popleft()
            try:
                waiter.loop.call_soon_threadsafe(self._deliver, waiter, slot)
                return
            except RuntimeError:  # that waiter's event loop is gone; try the next one
                continue

    def _deliver(self, waiter: _Waiter, slot: S) -> None:
        if waiter.future.done():  # cancelled meanwhile
            self.release(slot)
        else:
            waiter.future.set_result(slot)

    def note_hold(self, seconds: float) -> None:
        self.mean_hold_s = 0.8 * self.mean_hold_s + 0.2 * seconds


class Scheduler(Generic[S]):
    def __init__(self, slots: list[S], queue_size: int,
                 on_done: Callable[[Outcome], None] | None = None) -> None:
        self.pool: SlotPool[S] = SlotPool(slots, queue_size)
        self._executor = ThreadPoolExecutor(max_workers=len(slots) + 1, thread_name_prefix="zhiku-llm")
        self._on_done = on_done
        self._running: set[threading.Event] = set()  # cancel flags of the generations under way
        self._decoding: set[threading.Event] = set()  # ... of those past their first token

    @property
    def decoding(self) -> int:
        """Generations past their first token (`pool.busy` also counts those still reading their prompt)."""
        return len(self._decoding)

    async def stream(self, job: Callable[[S], Iterator[ChatDelta]]) -> AsyncGenerator[ChatDelta, None]:
        """Run `job(slot)` on a worker thread once a slot is free; yield its non-empty deltas."""
        arrived = time.monotonic()
        slot = await self.pool.acquire()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()
        self._running.add(cancel)
        outcome = Outcome(queued_s=time.monotonic() - arrived)

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the consumer's loop has closed
                cancel.set()

        def work() -> None:
            started = time.monotonic()
            first: float | None = None
            try:
                deltas = job(slot)
                try:
                    for delta in deltas:
                        if cancel.is_set():
                            outcome.status = "cancelled"
                            break
                        if delta.usage is not None:
                            outcome.prompt_tokens = delta.usage.prompt_tokens
                            outcome.completion_tokens = delta.usage.completion_tokens
                        # The first token, text or not: with tools the text is held back to the end, and
                        # timing from the first text would make decoding look instantaneous.
                        if first is None and not delta.finish_reason:
                            first = time.monotonic()
                            outcome.ttft_s = first - arrived
                            self._decoding.add(cancel)
                        if delta.text or delta.finish_reason or delta.tool_calls:
                            put(delta)
                finally:
                    close = getattr(deltas, "close", None)
                    if close is not None:
                        close()
            except BaseException as e:  # handed to the consumer, which re-raises it
                outcome.status = "error"
                put(e)
            finally:
                end = time.monotonic()
                if first is not None:
                    outcome.decode_s = end - first
                self.pool.note_hold(end - started)
                if self._on_done is not None:  # before the slot frees, so stats never lag the stream
                    self._on_done(outcome)
                self._running.discard(cancel)
                self._decoding.discard(cancel)
                self.pool.release(slot)
                put(_END)

        try:
            self._executor.submit(work)
        except RuntimeError:  # executor shut down
            self._running.discard(cancel)
            self.pool.release(slot)
            raise
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()

    def close(self, timeout: float = 10.0) -> None:
        """Stop every generation (each ends within a token) and wait for the workers, so the models
        can be freed safely afterwards."""
        for cancel in list(self._running):
            cancel.set()
        self._executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout
        while self._running and time.monotonic() < deadline:
            time.sleep(0.01)
