"""Continuous batching over one llama.cpp context: every step advances all active sequences in one llama_decode.

Decoding a small model on a CPU is bound by reading the weights, so one `llama_decode` over N sequences
costs little more than over one. One engine thread owns the context; requests arrive from any thread
and receive their tokens through a queue. Per step:

- each decoding sequence contributes its last sampled token (plus, for a lone greedy request with prompt
  lookup on, a draft copied from its own prompt, verified in the same decode);
- then one prompt chunk is evaluated (in its own llama_decode), so a long prompt delays running streams
  by at most one chunk per step, never by its whole evaluation;
- each sequence samples with its own sampler chain (llm/sampling.py).

The KV cache is unified (cells shared by all sequences), so copying a prefix into a new sequence
(`llama_memory_seq_cp`) only tags cells: a finished request's KV stays cached and the next request
that starts with the same tokens (system prompt and template head, a conversation's earlier turns)
skips evaluating them. Admission reserves prompt + max_new cells; when they are not free the request
waits in FIFO order (cached prefixes are evicted first), so an exhausted budget queues, never crashes.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import llama_cpp
import numpy as np
from llama_cpp import _internals as internals

from zhiku.llm.lookup import Drafter
from zhiku.llm.sampling import EngineError, Finished, Request, Sampling, sampler_chain

# Fewer shared tokens than this are not worth a cached prefix (re-evaluating them is as quick).
MIN_REUSE = 8
# llama.cpp's CPU flash attention switches to a tiled kernel at 64 query rows; decode rows stay below.
MAX_DECODE_ROWS = 63


@dataclass
class _Seq:
    req: Request
    seq_id: int
    sampler: internals.LlamaSampler
    reserve: int  # KV cells held for it
    drafter: Drafter  # prompt lookup (llm/lookup.py)
    kv: list[int] = field(default_factory=list)  # tokens whose KV is in the cache, in position order
    pending: list[int] = field(default_factory=list)  # prompt tokens still to evaluate
    last: int | None = None  # sampled, not yet evaluated
    n_out: int = 0


class BatchEngine:
    def __init__(self, model: internals.LlamaModel, *, n_cells: int, n_seq: int, n_threads: int,
                 n_batch: int = 512, chunk: int = 128, prefix_cache: bool = True,
                 threads_hint: Callable[[], int] | None = None, on_busy: Callable[[bool], None] | None = None,
                 draft_max: int = 8, solo_kernel: bool = True) -> None:
        """`n_cells`: the KV budget shared by all sequences; `n_seq`: how many run at once; `chunk`: prompt
        tokens evaluated per step while other sequences decode (alone, a prompt goes `n_batch` at a time);
        `solo_kernel`: a lone decode row goes alone, the fastest way (see _decode)."""
        self.model = model
        self.n_cells = n_cells
        self.n_seq = n_seq
        self.n_batch = n_batch
        self.chunk = min(chunk, n_batch)
        self.prefix_cache = prefix_cache
        self.draft_max = draft_max
        self.solo_kernel = solo_kernel
        self.threads = n_threads
        self._threads_hint = threads_hint
        self._threads_now = n_threads
        self._on_busy = on_busy  # told when the engine starts and stops having work (the core policy)
        self._busy = False
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_cells
        params.n_batch = params.n_ubatch = n_batch
        # twice the active sequences: the spare ids hold cached prefixes of finished requests; one scratch id
        params.n_seq_max = 2 * n_seq + 1
        self._scratch = 2 * n_seq
        params.kv_unified = True
        # Flash attention visits a sequence's cells one by one in cache order, skipping others' cells, so its
        # numbers do not depend on what else shares the batch. (The plain path sums over all cells with SIMD
        # lanes, and interleaved sequences shift which lane adds what: near-ties tip after a few dozen tokens.)
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.n_threads = params.n_threads_batch = n_threads
        params.no_perf = True
        self._ctx = internals.LlamaContext(model=model, params=params, verbose=False)
        self._mem = llama_cpp.llama_get_memory(self._ctx.ctx)
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._vocab = model.vocab
        self._n_vocab = model.n_vocab()
        self._lock = threading.Condition()
        self._waiting: deque[Request] = deque()
        self._active: list[_Seq] = []
        self._cached: dict[int, list[int]] = {}  # idle seq id -> tokens its KV holds (insertion order = LRU)
        # Ended sequences whose KV is not worth keeping are still dropped lazily (when cells are needed or
        # the engine idles): dropping cells below a running sequence makes llama.cpp put its next tokens
        # there, out of order, and attention would then sum in another order than alone.
        self._stale: set[int] = set()
        self._closed = False
        self.steps = 0
        self.totals = {"prompt": 0, "reused": 0, "drafted": 0, "accepted": 0}  # tokens, for benches and stats
        self._thread = threading.Thread(target=self._loop, name="zhiku-batch", daemon=True)
        self._thread.start()

    # -- public --------------------------------------------------------------------------------

    def submit(self, req: Request) -> Request:
        if len(req.prompt) + 1 > self.n_cells:
            raise EngineError(f"a prompt of {len(req.prompt)} tokens cannot fit {self.n_cells} KV cells")
        with self._lock:
            if self._closed:
                raise EngineError("the batching engine is closed")
            self._waiting.append(req)
            self._lock.notify()
        return req

    def generate(self, tokens: list[int], sampling: Sampling, max_new: int) -> Iterator[int]:
        """Submit and iterate; closing the iterator cancels the request."""
        req = self.submit(Request(tokens, sampling, max_new))
        try:
            yield from req.tokens()
        finally:
            req.cancel()

    @property
    def active(self) -> int:
        return len(self._active)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join(timeout=30)
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        self._ctx.close()

    # -- the loop --------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._lock:
                if not self._waiting and not self._active:
                    for seq_id in list(self._stale):
                        self._evict(seq_id)
                while not self._closed and not self._waiting and not self._active:
                    self._lock.wait()
                if self._closed:
                    break
                admitted = self._admit()
            self._note_busy(bool(self._active))
            try:
                if self._active:
                    self._step()
                elif not admitted:  # waiting for cells that no running sequence will free: impossible
                    with self._lock:
                        self._lock.wait(0.05)
            except Exception as e:  # a failed decode ends every sequence in it, never the engine
                for s in self._active:
                    s.req._out.put(EngineError(f"llama.cpp decode failed: {e}"))
                    self._free(s, keep=False)
                self._active = []
        self._note_busy(False)
        for s in self._active:
            s.req._out.put(EngineError("the batching engine was closed"))
        while self._waiting:
            self._waiting.popleft()._out.put(EngineError("the batching engine was closed"))

    def _note_busy(self, busy: bool) -> None:
        if busy != self._busy:
            self._busy = busy
            if self._on_busy is not None:
                self._on_busy(busy)

    def _used_cells(self) -> int:
        return sum(s.reserve for s in self._active) + sum(len(t) for t in self._cached.values())

    def _admit(self) -> bool:
        """Start waiting requests in FIFO order while a sequence and their KV cells are free."""
        admitted = False
        while self._waiting and len(self._active) < self.n_seq:
            req = self._waiting[0]
            if req.cancelled.is_set():
                self._waiting.popleft()
                req._out.put(Finished("stop"))
                continue
            reserve = min(len(req.prompt) + req.max_new, self.n_cells)
            # a seeded request is evaluated whole, like the first time: reproducible text, run after run
            src, shared = self._best_prefix(req.prompt) if not req.sampling.seeded else (None, 0)
            while not self._fits(reserve, src):
                victim = next((k for k in self._stale if k != src), None)
                if victim is None:
                    victim = next((k for k in self._cached if k != src), None)
                if victim is None:
                    if src is not None and src in self._cached and not self._active:
                        victim, src, shared = src, None, 0
                    else:
                        return admitted  # the head of the queue waits for running sequences to end
                self._evict(victim)
            self._waiting.popleft()
            try:
                self._start(req, reserve, src, shared)
            except EngineError as e:
                req._out.put(e)
                continue
            admitted = True
        return admitted

    def _fits(self, reserve: int, src: int | None) -> bool:
        """Whether a new sequence fits the KV budget and the sequence ids; a cached source is taken over."""
        taken = self._cached.get(src, []) if src is not None else []
        cells = self._used_cells() - len(taken) + reserve <= self.n_cells
        ids = len(self._active) + len(self._cached) - (1 if taken else 0) < 2 * self.n_seq
        return cells and ids

    def _best_prefix(self, prompt: list[int]) -> tuple[int | None, int]:
        if not self.prefix_cache:
            return None, 0
        best: tuple[int | None, int] = (None, 0)
        candidates = [(k, t) for k, t in self._cached.items() if k not in self._stale]
        candidates += [(s.seq_id, s.kv) for s in self._active]
        for seq_id, kv in candidates:
            n = _common_prefix(kv, prompt, len(prompt) - 1)  # keep one token to evaluate: it gives the logits
            if n > best[1]:
                best = (seq_id, n)
        return best if best[1] >= MIN_REUSE else (None, 0)

    def _start(self, req: Request, reserve: int, src: int | None, shared: int) -> None:
        sampler = sampler_chain(self.model, req.sampling)  # first: a grammar llama.cpp rejects fails only this request
        used = {s.seq_id for s in self._active} | set(self._cached)
        if src is not None and src in self._cached:
            seq_id = src  # take the cached sequence over: drop what differs, no copy at all
            del self._cached[src]
            llama_cpp.llama_memory_seq_rm(self._mem, seq_id, shared, -1)
        else:
            seq_id = next(i for i in range(2 * self.n_seq) if i not in used)
            llama_cpp.llama_memory_seq_rm(self._mem, seq_id, -1, -1)
            if src is not None:
                llama_cpp.llama_memory_seq_cp(self._mem, src, seq_id, 0, shared)
        req.reused = shared
        self.totals["prompt"] += len(req.prompt)
        self.totals["reused"] += shared
        seq = _Seq(req, seq_id, sampler, reserve, Drafter(self.draft_max), kv=req.prompt[:shared],
                   pending=req.prompt[shared:])
        self._active.append(seq)

    def _evict(self, seq_id: int) -> None:
        del self._cached[seq_id]
        self._stale.discard(seq_id)
        llama_cpp.llama_memory_seq_rm(self._mem, seq_id, -1, -1)

    def _free(self, s: _Seq, keep: bool) -> None:
        self._cached[s.seq_id] = s.kv
        if not (keep and self.prefix_cache and len(s.kv) >= MIN_REUSE):
            self._stale.add(s.seq_id)
        s.sampler.close()

    def _sync_threads(self) -> None:
        want = self._threads_hint() if self._threads_hint else self.threads
        if want != self._threads_now:
            llama_cpp.llama_set_n_threads(self._ctx.ctx, want, want)
            self._threads_now = want

    def _step(self) -> None:
        """One decode for the running streams' tokens, then one for a prompt chunk. Kept apart, streams'
        rows go through the per-row attention kernel (fewer than 64 rows), prompt chunks through the tiled
        one; a lone row takes the single-row path unless `solo_kernel` is off (see _decode)."""
        for s in [s for s in self._active if s.req.cancelled.is_set()]:
            self._active.remove(s)
            self._free(s, keep=True)
            s.req._out.put(Finished("stop"))
        if not self._active:
            return
        self._sync_threads()
        decoding = [s for s in self._active if s.last is not None]
        if decoding:
            self._batch.n_tokens = 0
            plan: list[tuple[_Seq, int, list[int]]] = []  # (seq, first batch index, tokens)
            # drafts only for a lone stream: beside others the batch already shares the weight reads that make
            # verified drafts cheap (bench/llm.py: 1.1-1.5x alone, 0.74x for 8 smollm2 streams)
            spare = MAX_DECODE_ROWS - len(decoding) if len(decoding) == 1 else 0
            for s in decoding:
                assert s.last is not None
                draft = self._draft(s, spare)
                spare -= len(draft)
                plan.append((s, self._batch.n_tokens, [s.last, *draft]))
                for i, t in enumerate(plan[-1][2]):
                    self._add(t, len(s.kv) + i, s.seq_id, True)
            self._decode()
            for s, first, toks in plan:
                self._verify(s, first, toks)
        # Prompts go in chunks of `chunk` tokens, one sequence per llama_decode, alone or not: the same
        # chunks take the same kernels, so a prompt's numbers do not depend on what else is running.
        # Beside running streams one chunk per step; alone, up to a batch's worth.
        budget = self.chunk if decoding else self.n_batch
        for s in [s for s in self._active if s.pending]:
            while s.pending and budget > 0:
                toks = s.pending[:self.chunk]
                self._batch.n_tokens = 0
                for i, t in enumerate(toks):
                    self._add(t, len(s.kv) + i, s.seq_id, len(toks) == len(s.pending) and i == len(toks) - 1)
                self._decode()
                s.kv.extend(toks)
                del s.pending[:len(toks)]
                budget -= len(toks)
                if not s.pending:
                    if s.req.sampling.probe:
                        s.req.probe_logprobs = self._logprobs(len(toks) - 1, s.req.sampling.probe)
                    self._emit(s, s.sampler.sample(self._ctx, len(toks) - 1))
            if budget <= 0:
                break

    def _decode(self) -> None:
        """llama_decode the batch. A lone row takes llama.cpp's single-row path (split-KV attention, summing in
        another order than the per-row kernel); without `solo_kernel` a scratch row keeps it on the per-row
        kernel (same greedy text alone as in a batch) at 10-23 % of a lone stream's decode (README)."""
        scratch = self._batch.n_tokens == 1 and not self.solo_kernel
        if scratch:
            self._add(0, 0, self._scratch, False)
        rc = llama_cpp.llama_decode(self._ctx.ctx, self._batch)
        if scratch:
            llama_cpp.llama_memory_seq_rm(self._mem, self._scratch, -1, -1)
        if rc != 0:
            raise EngineError(f"llama_decode returned {rc}")
        self.steps += 1

    def _logprobs(self, idx: int, tokens: tuple[int, ...]) -> list[float]:
        """Log-softmax of batch row `idx`'s logits at `tokens` (read only: sampling is untouched)."""
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._ctx.ctx, idx), shape=(self._n_vocab,))
        top = float(logits.max())
        log_z = top + float(np.log(np.exp(logits - top).sum()))
        return [float(logits[t]) - log_z for t in tokens]

    def _add(self, token: int, pos: int, seq_id: int, logits: bool) -> None:
        b = self._batch
        i = b.n_tokens
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq_id
        b.logits[i] = logits
        b.n_tokens = i + 1

    def _draft(self, s: _Seq, spare: int) -> list[int]:
        p, limit = s.req.sampling, min(s.req.max_new - s.n_out - 1, s.reserve - len(s.kv) - 1, spare)
        if not p.lookup or p.temperature > 0 or p.grammar is not None or limit <= 0 or s.last is None:
            return []
        return s.drafter.propose([*s.kv, s.last], limit)

    def _verify(self, s: _Seq, first: int, toks: list[int]) -> None:
        """`toks` = [last sampled, draft...] were decoded; sample after each while the draft holds."""
        s.kv.append(toks[0])
        s.last = None
        draft = toks[1:]
        taken = 0
        for i in range(len(toks)):
            token = s.sampler.sample(self._ctx, first + i)
            if not self._emit(s, token) or i == len(draft) or token != draft[i]:
                break
            s.kv.append(token)  # the draft token's KV is right: it is what was sampled
            s.last = None
            taken += 1
        s.drafter.update(len(draft), taken)
        s.req.drafted += len(draft)
        s.req.accepted += taken
        self.totals["drafted"] += len(draft)
        self.totals["accepted"] += taken
        if draft:  # drop the KV of draft tokens that were not taken
            llama_cpp.llama_memory_seq_rm(self._mem, s.seq_id, len(s.kv), -1)

    def _emit(self, s: _Seq, token: int) -> bool:
        """Hand a sampled token to the consumer; False when the sequence has ended (and was freed)."""
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            return self._end(s, "stop")
        s.req._out.put(token)
        s.n_out += 1
        s.last = token
        if s.n_out >= s.req.max_new or len(s.kv) + 1 >= s.reserve:
            s.last = None
            return self._end(s, "length")
        return True

    def _end(self, s: _Seq, reason: str) -> bool:
        s.last = None
        if s in self._active:
            self._active.remove(s)
        self._free(s, keep=True)
        s.req._out.put(Finished(reason))
        return False


def _common_prefix(a: list[int], b: list[int], limit: int) -> int:
    n = min(len(a), len(b), limit)
    return next((i for i in range(n) if a[i] != b[i]), n)
