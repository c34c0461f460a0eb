"""Serving many at once (the parts of `zhiku bench llm` about batching, prefix reuse and shared cores).

- aggregate tokens/s at 1, 2, 4, 8 streams, three ways in one run: zhiku's batched engine (LlamaCppModel,
  one context), today's-before separate contexts (one llama-cpp-python `Llama` per stream, the cores split
  among them, as zhiku did before batching), and a plain low-level batched loop (one context, greedy, no
  per-request machinery: the engine's limit). Aggregate = all completion tokens / wall time, prompts included.
- time to first token of a KB-QA-shaped prompt (instructions + passages shared, a different question each
  time) with and without prefix reuse;
- decode tokens/s of one chat stream while the configured embedder embeds passages on other threads (what
  `zhiku kb add` spends its time on), with and without the core-sharing policy, beside the idle figure.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TOPICS = ["how a hash map works", "the water cycle", "how vaccines train the immune system", "binary search",
          "why the sky is blue", "how a bicycle stays upright", "the causes of the French revolution",
          "how compilers optimise loops"]


def prompt(i: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": f"Explain {TOPICS[i % len(TOPICS)]} in detail."}]


def _threads(jobs: list[Callable[[], Any]]) -> tuple[list[Any], float]:
    out: list[Any] = [None] * len(jobs)

    def run(i: int) -> None:
        out[i] = jobs[i]()

    ts = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out, time.perf_counter() - t0


def _batched(model: Any, n: int, max_tokens: int) -> float:
    from zhiku.llm.base import GenerationParams

    def one(i: int) -> int:
        usage = None
        for d in model.chat(prompt(i), GenerationParams(max_tokens=max_tokens, temperature=0.0)):
            usage = d.usage or usage
        return usage.completion_tokens if usage else 0

    counts, wall = _threads([lambda i=i: one(i) for i in range(n)])
    return sum(counts) / wall


def _separate(path: Path, threads: int, n: int, max_tokens: int) -> float:
    import llama_cpp

    per = max(1, threads // n)  # the old slot pool split the cores among busy slots
    llms = [llama_cpp.Llama(str(path), n_ctx=1024, n_threads=per, n_threads_batch=per, verbose=False)
            for _ in range(n)]

    def one(i: int) -> int:
        out = llms[i].create_chat_completion(prompt(i), temperature=0.0, max_tokens=max_tokens, repeat_penalty=1.0)
        return int(out["usage"]["completion_tokens"])

    try:
        counts, wall = _threads([lambda i=i: one(i) for i in range(n)])
    finally:
        for llm in llms:
            llm.close()
    return sum(counts) / wall


def _plain_loop(model: Any, n: int, max_tokens: int) -> float:
    """One context, n sequences, greedy argmax by llama.cpp's greedy sampler: nothing but the engine."""
    import llama_cpp
    from llama_cpp import _internals as internals

    raw = model.engine.model
    prompts = [model._chat_prompt(prompt(i)) for i in range(n)]
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = 1024 * n
    params.n_batch = params.n_ubatch = 512
    params.n_seq_max = n
    params.kv_unified = True
    params.n_threads = params.n_threads_batch = model.threads
    ctx = internals.LlamaContext(model=raw, params=params, verbose=False)
    batch = llama_cpp.llama_batch_init(512, 0, 1)
    greedy = internals.LlamaSampler()
    greedy.add_greedy()

    def add(token: int, pos: int, seq: int, logits: bool) -> None:
        k = batch.n_tokens
        batch.token[k], batch.pos[k], batch.n_seq_id[k], batch.logits[k] = token, pos, 1, logits
        batch.seq_id[k][0] = seq
        batch.n_tokens = k + 1

    t0 = time.perf_counter()
    last, pos, done, count = [0] * n, [0] * n, [False] * n, 0
    for s, toks in enumerate(prompts):
        for a in range(0, len(toks), 512):
            batch.n_tokens = 0
            part = toks[a:a + 512]
            for j, t in enumerate(part):
                add(t, a + j, s, a + j == len(toks) - 1)
            llama_cpp.llama_decode(ctx.ctx, batch)
        last[s], pos[s] = greedy.sample(ctx, batch.n_tokens - 1), len(toks)
        count += 1
    for _ in range(max_tokens - 1):
        live = [s for s in range(n) if not done[s]]
        if not live:
            break
        batch.n_tokens = 0
        for s in live:
            add(last[s], pos[s], s, True)
            pos[s] += 1
        llama_cpp.llama_decode(ctx.ctx, batch)
        for k, s in enumerate(live):
            last[s] = greedy.sample(ctx, k)
            if llama_cpp.llama_vocab_is_eog(raw.vocab, last[s]):
                done[s] = True
            else:
                count += 1
    wall = time.perf_counter() - t0
    llama_cpp.llama_batch_free(batch)
    greedy.close()
    ctx.close()
    return count / wall


def aggregate(path: Path, threads: int, max_tokens: int, streams: tuple[int, ...]) -> list[dict[str, Any]]:
    from zhiku.llm.llama_cpp import LlamaCppModel

    model = LlamaCppModel(path, "bench", n_ctx=1024, n_threads=threads, parallel=max(streams), prefix_cache=False)
    rows = []
    try:
        _batched(model, 1, 8)  # warm the page cache and first allocations
        for n in streams:
            ways: dict[str, Callable[[], float]] = {
                "batched": lambda n=n: _batched(model, n, max_tokens),
                "separate": lambda n=n: _separate(path, threads, n, max_tokens),
                "plain_loop": lambda n=n: _plain_loop(model, n, max_tokens),
            }
            order = list(ways)
            random.Random(n).shuffle(order)  # drift on a shared machine hits all three alike
            row: dict[str, Any] = {"streams": n}
            for way in order:
                row[way] = ways[way]()
            row["batched_over_plain"] = row["batched"] / row["plain_loop"]
            row["batched_over_separate"] = row["batched"] / row["separate"]
            print(f"  {n} streams: batched {row['batched']:.1f}, separate {row['separate']:.1f}, "
                  f"plain loop {row['plain_loop']:.1f} tok/s", flush=True)
            rows.append(row)
    finally:
        model.close()
    return rows


KB_HEAD = ("You answer questions from the knowledge base below. Use only the passages; cite them as [n]; if they "
           "do not contain the answer, say so.\n\n")


def kb_messages(passages: list[str], question: str) -> list[dict[str, str]]:
    body = "".join(f"[{i + 1}] {p}\n\n" for i, p in enumerate(passages))
    return [{"role": "system", "content": KB_HEAD + body}, {"role": "user", "content": question}]


def prefix_ttft(path: Path, threads: int, passages: list[str], questions: list[str]) -> dict[str, Any]:
    """TTFT with and without prefix reuse: the same passages (a follow-up question on the same material)."""
    from zhiku.llm.base import GenerationParams
    from zhiku.llm.llama_cpp import LlamaCppModel

    models = {flag: LlamaCppModel(path, "bench", n_ctx=2048, n_threads=threads, parallel=2, prefix_cache=flag)
              for flag in (True, False)}
    runs: dict[bool, list[float]] = {True: [], False: []}
    try:
        for m in models.values():  # the first question fills the cache; it is not timed
            for _ in m.chat(kb_messages(passages, "warm"), GenerationParams(max_tokens=1, temperature=0.0)):
                pass
        for q in questions:
            for flag in (True, False):
                t0 = time.perf_counter()
                for d in models[flag].chat(kb_messages(passages, q), GenerationParams(max_tokens=4, temperature=0.0)):
                    if d.text or d.finish_reason:
                        runs[flag].append(time.perf_counter() - t0)
                        break
        prompt_tokens = models[True].count_chat_tokens(kb_messages(passages, questions[0]))
        shared = models[True].engine.totals["reused"] / max(1, len(questions))
    finally:
        for m in models.values():
            m.close()
    with_reuse, without = statistics.median(runs[True]), statistics.median(runs[False])
    return {"prompt_tokens": prompt_tokens, "shared_tokens_mean": shared, "ttft_reuse_s": with_reuse,
            "ttft_no_reuse_s": without, "ratio": with_reuse / without, "runs": {"reuse": runs[True],
                                                                              "no_reuse": runs[False]}}


def during_ingestion(path: Path, threads: int, texts: list[str], max_tokens: int, reps: int) -> dict[str, Any]:
    """Decode tok/s of one chat stream: idle, while the embedder embeds (policy on), and (policy off)."""
    from zhiku.config import Settings
    from zhiku.embed.registry import get_embedder
    from zhiku.llm.base import GenerationParams
    from zhiku.llm.cores import CORES
    from zhiku.llm.llama_cpp import LlamaCppModel

    embedder = get_embedder("e5-small", Settings())
    model = LlamaCppModel(path, "bench", n_ctx=1024, n_threads=threads, parallel=1, prefix_cache=False,
                          threads_hint=lambda: CORES.generation_threads(threads), on_busy=CORES.generation)

    def decode_tps() -> float:
        first = last = 0.0
        n = 0
        for d in model.chat(prompt(0), GenerationParams(max_tokens=max_tokens, temperature=0.0)):
            if d.text:
                last = time.perf_counter()
                first = first or last
                n += 1
        return (n - 1) / (last - first)

    def with_ingestion(policy: bool) -> float:
        CORES.enabled = policy
        stop = threading.Event()

        def embed() -> None:
            i = 0
            while not stop.is_set():
                embedder.embed_passages(texts[i % len(texts): i % len(texts) + 32])
                i += 32

        t = threading.Thread(target=embed)
        t.start()
        time.sleep(2.0)  # ingestion under way before the chat starts
        try:
            return decode_tps()
        finally:
            stop.set()
            t.join()

    out: dict[str, list[float]] = {"idle": [], "policy": [], "no_policy": []}
    try:
        decode_tps()  # warm
        embedder.embed_passages(texts[:8])
        for _ in range(reps):
            out["idle"].append(decode_tps())
            out["policy"].append(with_ingestion(True))
            out["no_policy"].append(with_ingestion(False))
            print(f"  decode idle {out['idle'][-1]:.1f}, during ingestion: policy {out['policy'][-1]:.1f}, "
                  f"no policy {out['no_policy'][-1]:.1f} tok/s", flush=True)
    finally:
        CORES.enabled = True
        model.close()
    med = {k: statistics.median(v) for k, v in out.items()}
    return {"decode_tps_median": med, "policy_over_idle": med["policy"] / med["idle"],
            "no_policy_over_idle": med["no_policy"] / med["idle"], "runs": out}
