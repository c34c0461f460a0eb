"""LLM serving speed: zhiku's /v1 streaming against llama-cpp-python called directly, and concurrency.

`zhiku bench llm` (or `python -m bench.llm`). One run, one model, one prompt, the same settings (context,
threads, greedy decoding, a fixed seed) for both paths:

- direct: `Llama.create_chat_completion(stream=True)` in this process, the plain way to use the library;
- server: a zhiku app served by uvicorn on a loopback port, read with the official `openai` client
  (`stream=True`, usage included).

Both are timed from the call to the first text (TTFT) and from the first text to the last (decode);
decode tokens/s = (completion tokens - 1) / decode seconds, the tokens counted by the model's tokenizer.
Runs alternate between the paths so drift on a shared machine hits both alike; medians are reported.
Then, for the default pack and smollm2-135m (bench/_serving.py): aggregate tokens/s at 1, 2, 4 and 8 streams
for zhiku's batched engine beside separate contexts (zhiku before batching) and a plain low-level batched
loop; time to first token with and without prefix reuse; one chat stream's decode speed while the embedder
embeds, with and without the core-sharing policy, beside idle. Writes llm-<stamp>.json and .png.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import zhiku  # noqa: F401 - first: it sets the OpenMP wait policy before llama.cpp loads

from .report import save_area

QUESTION = ("Explain in detail how a hash map works, with its strengths and weaknesses, "
            "then give a long example in Python.")


def messages(run: int) -> list[dict[str, str]]:
    """The same prompt with a run number up front, so no run finds its prompt in a KV cache:
    TTFT is always that of a new prompt, on both paths."""
    return [{"role": "system", "content": f"Session {run}. You are a helpful assistant."},
            {"role": "user", "content": QUESTION}]
SEED = 1234


def _model() -> tuple[str, Path, Any]:
    from zhiku import packs
    from zhiku.config import load_settings

    settings = load_settings()
    name = os.environ.get("ZHIKU_BENCH_MODEL") or settings.model
    return name, packs.resolve(settings.models_path, name), settings


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


def packs_path(settings: Any, pack: str) -> Path:
    from zhiku import packs

    return packs.resolve(settings.models_path, pack)


SQUAD = [Path(__file__).resolve().parents[n] / "shared" / "evaldata" / "squad_v1.1_dev" / "dev-v1.1.json"
         for n in (2, 3)]


def _kb_material() -> tuple[list[str], list[str]]:
    """Three passages of one SQuAD article and questions on them (a KB-QA-shaped prompt), or made-up ones."""
    for path in SQUAD:
        if path.exists():
            article = json.loads(path.read_text(encoding="utf-8"))["data"][0]
            paras = article["paragraphs"][:3]
            return [p["context"][:600] for p in paras], [qa["question"] for p in paras for qa in p["qas"]][:8]
    passage = ("The Saltmarsh lighthouse keeper is Oswin Fairweather; he has kept the light since 1987 and repaints "
               "the tower every spring, when the harbour fills with fishing boats and the ferry timetable changes. ")
    return [passage * 3] * 3, [f"Question {i}: who keeps the light, and since when?" for i in range(8)]


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def run(quick: bool, out_dir: Path) -> dict[str, Any]:
    import llama_cpp
    from openai import OpenAI

    from zhiku.config import Settings
    from zhiku.llm.native import patch_llama_defaults
    from zhiku.server.app import create_app
    from zhiku.server.run import serving as live_server

    patch_llama_defaults()  # llama_cpp.Llama below loads as zhiku does (no AMX layouts where they fault)
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
    with live_server(app) as base:
        client = OpenAI(base_url=base + "/v1", api_key="bench", max_retries=0, timeout=600)
        _direct_run(direct, 8, 0)  # warm both paths (page cache, first allocations)
        _server_run(client, model_id, 8, 0)
        for rep in range(1, reps + 1):
            direct_runs.append(_direct_run(direct, max_tokens, rep))
            server_runs.append(_server_run(client, model_id, max_tokens, rep))
            print(f"  direct {direct_runs[-1]['decode_tps']:.1f} tok/s, "
                  f"server {server_runs[-1]['decode_tps']:.1f} tok/s", flush=True)
        direct.close()
    app.state.services.close()

    from bench import _serving

    d_tps, s_tps = _median(direct_runs, "decode_tps"), _median(server_runs, "decode_tps")
    d_ttft, s_ttft = _median(direct_runs, "ttft_s"), _median(server_runs, "ttft_s")
    streams = (1, 2, 4, 8)
    serving: dict[str, Any] = {}
    passages, questions = _kb_material()
    for pack in dict.fromkeys([name, "smollm2-135m"]):
        pack_path = path if pack == name else packs_path(base_settings, pack)
        print(f"  {pack}: aggregate throughput", flush=True)
        serving[pack] = {"aggregate": _serving.aggregate(pack_path, threads, max_tokens, streams)}
        serving[pack]["prefix"] = _serving.prefix_ttft(pack_path, threads, passages, questions[:3 if quick else 6])
        p = serving[pack]["prefix"]
        print(f"  TTFT {p['ttft_reuse_s'] * 1000:.0f} ms with prefix reuse, {p['ttft_no_reuse_s'] * 1000:.0f} "
              "ms without", flush=True)
    print(f"  {name}: chat during ingestion", flush=True)
    texts = passages * 40
    ingestion = _serving.during_ingestion(path, threads, texts, max_tokens, 1 if quick else 3)

    readme: list[dict[str, Any]] = [
        {"measure": f"decode tok/s via /v1 ({name})", "value": s_tps,
         "baseline": f"{d_tps:.1f} (llama-cpp-python direct)"},
        {"measure": "time to first token via /v1, s", "value": s_ttft, "baseline": f"{d_ttft:.3g} (direct)"},
    ]
    targets: dict[str, bool] = {"server_at_least_0.95_of_direct": s_tps / d_tps >= 0.95}
    for pack, res in serving.items():
        agg = {r["streams"]: r for r in res["aggregate"]}
        for n in streams[1:]:
            r = agg[n]
            readme.append({"measure": f"aggregate tok/s, {n} streams, batched ({pack})", "value": r["batched"],
                           "baseline": f"{r['separate']:.1f} separate contexts, {r['plain_loop']:.1f} plain loop"})
        for n in (4, 8):
            if n in agg:
                targets[f"{pack}: {n} streams >= 0.9 x plain loop"] = agg[n]["batched_over_plain"] >= 0.9
        targets[f"{pack}: 1 stream within 5% of separate"] = agg[1]["batched"] >= 0.95 * agg[1]["separate"]
        p = res["prefix"]
        readme.append({"measure": f"KB-QA TTFT with prefix reuse, s ({pack}, {p['prompt_tokens']} tok prompt)",
                       "value": p["ttft_reuse_s"], "baseline": f"{p['ttft_no_reuse_s']:.3g} without"})
        targets[f"{pack}: TTFT with reuse <= 0.5 x without"] = p["ratio"] <= 0.5
    med = ingestion["decode_tps_median"]
    readme.append({"measure": f"chat decode tok/s while embedding ({name}, core sharing)", "value": med["policy"],
                   "baseline": f"{med['no_policy']:.1f} without the policy, {med['idle']:.1f} idle"})
    targets["chat during ingestion >= 0.5 x idle"] = ingestion["policy_over_idle"] >= 0.5
    summary: dict[str, Any] = {
        "model": name, "model_file": path.name, "threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""), "ctx": ctx, "max_tokens": max_tokens,
        "reps": reps, "prompt_tokens": server_runs[0].get("prompt_tokens"),
        "load_before": os.getloadavg(),
        "direct": {"decode_tps_median": d_tps, "ttft_median_s": d_ttft, "runs": direct_runs},
        "server": {"decode_tps_median": s_tps, "ttft_median_s": s_ttft, "runs": server_runs},
        "server_over_direct": s_tps / d_tps,
        "serving": serving, "ingestion": ingestion, "targets": targets, "readme": readme,
    }
    save_area(out_dir, "llm", summary, lambda png: _plot(summary, png))
    return summary


def _plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    packs = list(summary["serving"])
    fig, axes = plt.subplots(1, len(packs) + 1, figsize=(5 * (len(packs) + 1), 4))
    for ax, pack in zip(axes, packs, strict=False):
        rows = summary["serving"][pack]["aggregate"]
        xs = [str(r["streams"]) for r in rows]
        for way, color in (("plain_loop", "#999999"), ("batched", "#2a7ab0"), ("separate", "#d95f02")):
            ax.plot(xs, [r[way] for r in rows], marker="o", color=color,
                    label={"plain_loop": "plain batched loop (limit)", "batched": "zhiku batched",
                           "separate": "separate contexts (before)"}[way])
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel("aggregate tokens/s")
        ax.set_title(f"{pack}, {summary['threads']} threads")
        ax.set_ylim(0, None)
        ax.legend(fontsize=8)
    ax = axes[-1]
    med = summary["ingestion"]["decode_tps_median"]
    labels = ["idle", "embedding,\ncore sharing", "embedding,\nno policy"]
    values = [med["idle"], med["policy"], med["no_policy"]]
    ax.bar(labels, values, color=["#999999", "#2a7ab0", "#d95f02"])
    for i, v in enumerate(values):
        ax.annotate(f"{v:.1f}", (i, v), ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("chat decode tokens/s (median)")
    ax.set_title(f"chat while ingesting, {summary['model']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    print(json.dumps(run(quick=False, out_dir=Path(__file__).resolve().parent / "results"), indent=1)[:2000])
