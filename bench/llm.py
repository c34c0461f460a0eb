"""LLM serving speed: zhiku's /v1 streaming against llama-cpp-python called directly, and concurrency.

`zhiku bench llm` (or `python -m bench.llm`). One run, one model, one prompt, the same settings (context,
threads, greedy decoding, a fixed seed) for both paths:

- direct: `Llama.create_chat_completion(stream=True)` in this process, the plain way to use the library;
- server: a zhiku app served by uvicorn on a loopback port, read with the official `openai` client
  (`stream=True`, usage included).

Both are timed from the call to the first text (TTFT) and from the first text to the last (decode);
decode tokens/s = (completion tokens - 1) / decode seconds, the tokens counted by the model's tokenizer.
Runs alternate between the paths so drift on a shared machine hits both alike; medians are reported.
Then aggregate tokens/s (all completion tokens / wall time) with 1, 2 and 4 concurrent streams.
Writes llm-<stamp>.json and .png under the results folder.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import zhiku  # noqa: F401 - first: it sets the OpenMP wait policy before llama.cpp loads

QUESTION = ("Explain in detail how a hash map works, with its strengths and weaknesses, "
            "then give a long example in Python.")


def messages(run: int) -> list[dict[str, str]]:
    """The same prompt with a run number up front, so no run finds its prompt in a KV cache:
    TTFT is always that of a new prompt, on both paths."""
    return [{"role": "system", "content": f"Session {run}. You are a helpful assistant."},
            {"role": "user", "content": QUESTION}]
SEED = 1234


def _model() -> tuple[str, Path, Any]:
    from zhiku.config import load_settings
    from zhiku.models import packs

    settings = load_settings()
    name = os.environ.get("ZHIKU_BENCH_MODEL") or settings.model
    return name, packs.resolve(settings.models_path, name), settings


@contextmanager
def _serve(app: Any) -> Iterator[str]:
    import socket

    import httpx
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            httpx.get(base + "/health", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _direct_run(llm: Any, max_tokens: int, run: int) -> dict[str, float]:
    t0 = time.perf_counter()
    first = last = 0.0
    parts: list[str] = []
    for chunk in llm.create_chat_completion(messages(run), stream=True, temperature=0.0, seed=SEED,
                                            max_tokens=max_tokens, repeat_penalty=1.0):
        text = chunk["choices"][0]["delta"].get("content")
        if text:
            last = time.perf_counter()
            first = first or last
            parts.append(text)
    tokens = len(llm.tokenize("".join(parts).encode(), add_bos=False, special=False))
    return {"ttft_s": first - t0, "decode_s": last - first, "tokens": tokens,
            "decode_tps": (tokens - 1) / (last - first)}


def _server_run(client: Any, model: str, max_tokens: int, run: int) -> dict[str, float]:
    t0 = time.perf_counter()
    first = last = 0.0
    tokens = prompt = 0
    for chunk in client.chat.completions.create(model=model, messages=messages(run), stream=True, temperature=0,
                                                seed=SEED, max_tokens=max_tokens,
                                                stream_options={"include_usage": True}):
        if chunk.usage is not None:
            tokens, prompt = chunk.usage.completion_tokens, chunk.usage.prompt_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter()
            first = first or last
    return {"ttft_s": first - t0, "decode_s": last - first, "tokens": tokens, "prompt_tokens": prompt,
            "decode_tps": (tokens - 1) / (last - first)}


def _concurrent(client: Any, model: str, streams: int, max_tokens: int, run: int) -> dict[str, float]:
    results: list[dict[str, float]] = [{} for _ in range(streams)]

    def one(i: int) -> None:
        results[i] = _server_run(client, model, max_tokens, run + i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    total = sum(r["tokens"] for r in results)
    return {"streams": streams, "wall_s": wall, "tokens": total, "aggregate_tps": total / wall,
            "ttft_median_s": statistics.median(r["ttft_s"] for r in results)}


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def run(quick: bool, out_dir: Path) -> dict[str, Any]:
    import llama_cpp
    from openai import OpenAI

    from zhiku.config import Settings
    from zhiku.server.app import create_app

    name, path, base_settings = _model()
    threads = base_settings.resolved_threads
    ctx = 2048
    max_tokens = 64 if quick else 160
    reps = 2 if quick else 5
    direct = llama_cpp.Llama(str(path), n_ctx=ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
    home = Path(tempfile.mkdtemp(prefix="zhiku-bench-"))
    settings = Settings(home=home, model=str(path), ctx=ctx, threads=threads, parallel=2, queue_size=16,
                        ui=False)
    app = create_app(settings, ui=False)
    model_id = app.state.services.llm.model_id
    direct_runs: list[dict[str, float]] = []
    server_runs: list[dict[str, float]] = []
    with _serve(app) as base:
        client = OpenAI(base_url=base + "/v1", api_key="bench", max_retries=0, timeout=600)
        _direct_run(direct, 8, 0)  # warm both paths (page cache, first allocations)
        _server_run(client, model_id, 8, 0)
        for rep in range(1, reps + 1):
            direct_runs.append(_direct_run(direct, max_tokens, rep))
            server_runs.append(_server_run(client, model_id, max_tokens, rep))
            print(f"  direct {direct_runs[-1]['decode_tps']:.1f} tok/s, "
                  f"server {server_runs[-1]['decode_tps']:.1f} tok/s", flush=True)
        direct.close()
        concurrency = []
        for n in (1, 2, 4):
            concurrency.append(_concurrent(client, model_id, n, max_tokens, 100 * n))
            print(f"  {n} streams: {concurrency[-1]['aggregate_tps']:.1f} tok/s aggregate", flush=True)

    d_tps, s_tps = _median(direct_runs, "decode_tps"), _median(server_runs, "decode_tps")
    d_ttft, s_ttft = _median(direct_runs, "ttft_s"), _median(server_runs, "ttft_s")
    agg = {c["streams"]: c["aggregate_tps"] for c in concurrency}
    summary: dict[str, Any] = {
        "model": name, "model_file": path.name, "threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""), "ctx": ctx, "max_tokens": max_tokens,
        "reps": reps, "prompt_tokens": server_runs[0].get("prompt_tokens"),
        "direct": {"decode_tps_median": d_tps, "ttft_median_s": d_ttft, "runs": direct_runs},
        "server": {"decode_tps_median": s_tps, "ttft_median_s": s_ttft, "runs": server_runs},
        "server_over_direct": s_tps / d_tps,
        "concurrency": concurrency,
        "targets": {"server_at_least_0.95_of_direct": s_tps / d_tps >= 0.95,
                    "4_streams_at_least_1_stream": agg[4] >= agg[1]},
        "readme": [
            {"measure": f"decode tok/s via /v1 ({name})", "value": s_tps,
             "baseline": f"{d_tps:.1f} (llama-cpp-python direct)"},
            {"measure": "server / direct decode speed", "value": s_tps / d_tps},
            {"measure": "time to first token via /v1, s", "value": s_ttft, "baseline": f"{d_ttft:.3g} (direct)"},
            *({"measure": f"aggregate tok/s, {n} streams", "value": agg[n],
               **({"baseline": f"{agg[1]:.1f} (1 stream)"} if n > 1 else {})} for n in (1, 2, 4)),
        ],
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"llm-{stamp}.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    _plot(summary, out_dir / f"llm-{stamp}.png")
    return summary


def _plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    labels = ["llama-cpp-python\ndirect", "zhiku /v1\n(openai client)"]
    values = [summary["direct"]["decode_tps_median"], summary["server"]["decode_tps_median"]]
    bars = ax1.bar(labels, values, color=["#999999", "#2a7ab0"])
    for bar, v, ttft in zip(bars, values, (summary["direct"]["ttft_median_s"], summary["server"]["ttft_median_s"]),
                            strict=True):
        ax1.annotate(f"{v:.1f} tok/s\nTTFT {ttft * 1000:.0f} ms", (bar.get_x() + bar.get_width() / 2, v),
                     ha="center", va="bottom", fontsize=9)
    ax1.set_ylabel("decode tokens/s (median)")
    ax1.set_title(f"one stream, {summary['model']}")
    ax1.set_ylim(0, max(values) * 1.3)
    conc = summary["concurrency"]
    ax2.bar([str(c["streams"]) for c in conc], [c["aggregate_tps"] for c in conc], color="#2a7ab0")
    ax2.set_xlabel("concurrent streams")
    ax2.set_ylabel("aggregate tokens/s")
    ax2.set_title(f"throughput, {summary['threads']} threads, 2 slots")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    print(json.dumps(run(quick=False, out_dir=Path(__file__).resolve().parent / "results"), indent=1)[:2000])
