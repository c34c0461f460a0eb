"""Knowledge-base QA latency: time to first token split into retrieval, prompt assembly and prompt
evaluation, and decode speed, as the knowledge base grows to 100k chunks.

Setup: a knowledge base with five real "needle" documents (embedded with the configured embedder) and
synthetic distractor chunks (sentences drawn from SQuAD's vocabulary when available, random unit vectors)
inserted through the store, so that 100k chunks build in seconds rather than hours of embedding.
Each question is asked through ChatService.stream (the path the API and UI use), save off.

Baseline, in the same run: the LLM alone (llm.chat) on a prompt of the same length (the KB prompt with its
passage words reversed, so the prompt cache cannot reuse it), i.e. what time to first token would be if
retrieval and assembly were free. Target: everything before prompt evaluation < 10% of TTFT at 100k.

Then KB-answer decode tokens/s with and without prompt-lookup decoding (drafts copied from the retrieved
passages, verified in the same decode), the same questions alternating in one run, answers compared.

Writes chat-<stamp>.json and .png under the results folder. Model: ZHIKU_BENCH_MODEL or qwen2.5-coder-0.5b.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .report import save_area

NEEDLES = [
    ("lighthouse.md", "# Saltmarsh harbour\n\nThe Saltmarsh lighthouse keeper is Oswin Fairweather; he has kept "
     "the light since 1987 and repaints the tower every spring.", "Who is the keeper of the Saltmarsh lighthouse?"),
    ("bakery.md", "# Mill Lane\n\nThe Copperkettle bakery on Mill Lane bakes rye bread on Tuesdays in a beech-wood "
     "oven built in 1902.", "On which day does the Copperkettle bakery bake rye bread?"),
    ("gearbox.md", "# Kestrel 9 service note\n\nThe Kestrel 9 gearbox oil must be changed every 40,000 kilometres, "
     "using KX-70 synthetic oil.", "How often must the Kestrel 9 gearbox oil be changed?"),
    ("orchard.md", "# Brackenfield orchard\n\nThe Brackenfield orchard grows 312 apple trees, mostly the Winter "
     "Pearmain variety, and presses cider in October.", "How many apple trees grow in the Brackenfield orchard?"),
    ("observatory.md", "# Hollow Ridge observatory\n\nThe Hollow Ridge observatory telescope has a 1.2 metre mirror "
     "and opens to visitors on the first Friday of each month.",
     "How large is the mirror of the Hollow Ridge observatory telescope?"),
]
SQUAD = Path(__file__).resolve().parents[2] / "shared" / "evaldata" / "squad_v1.1_dev" / "dev-v1.1.json"
DOC_CHUNKS = 1000  # synthetic chunks per synthetic document


def _vocabulary() -> list[str]:
    if SQUAD.exists():
        data = json.loads(SQUAD.read_text(encoding="utf-8"))
        words = re.findall(r"[A-Za-z]{3,}", " ".join(p["context"] for a in data["data"] for p in a["paragraphs"]))
        return sorted(set(words))
    rng = np.random.default_rng(1)
    return ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), int(rng.integers(3, 10)))) for _ in range(20000)]


def _grow(services: Any, name: str, target: int, vocab: list[str], rng: np.random.Generator) -> float:
    """Add synthetic chunks until the knowledge base holds `target`; returns seconds spent."""
    from zhiku.kb.store import NewChunk, NewDocument

    t0 = time.perf_counter()
    rec = services.kb.store.get_kb(name)
    have = services.kb.get(name).chunks
    words = np.array(vocab)
    n_doc = have // DOC_CHUNKS
    while have < target:
        n = min(DOC_CHUNKS, target - have)
        lengths = rng.integers(40, 90, n)
        texts = [" ".join(rng.choice(words, int(k))) + "." for k in lengths]
        vectors = rng.standard_normal((n, rec.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        body = "\n".join(texts).encode()
        doc = NewDocument(f"synthetic/{n_doc:05d}.txt", hashlib.sha256(body).hexdigest(), "synthetic", "ok", None,
                          len(body))
        services.kb.store.put_document(rec, doc, [NewChunk(t, {"heading": []}) for t in texts], vectors)
        have += n
        n_doc += 1
    return time.perf_counter() - t0


async def _ask(services: Any, kb: str, question: str, max_tokens: int) -> dict[str, Any]:
    from zhiku.chat.types import ChatRequest

    request = ChatRequest(query=question, mode="kb", kb=kb, save=False, max_tokens=max_tokens, temperature=0.0,
                          top_k=3, language="en")
    result = await services.chat.answer(request)
    t = result.timings
    before_eval = t["first_token_ms"] - t["prompt_eval_ms"]
    return {"retrieval_ms": t["retrieval_ms"], "assembly_ms": t["prompt_ms"], "prompt_eval_ms": t["prompt_eval_ms"],
            "ttft_ms": t["first_token_ms"], "before_eval_ms": before_eval,
            "before_eval_share": before_eval / t["first_token_ms"],
            "decode_tps": t.get("decode_tokens_per_s", 0.0), "prompt_tokens": result.usage.get("prompt_tokens", 0),
            "completion_tokens": result.usage.get("completion_tokens", 0),
            "top_document": result.sources[0]["document"] if result.sources else None}


async def _answer(services: Any, kb: str, question: str, max_tokens: int) -> tuple[str, float]:
    from zhiku.chat.types import ChatRequest

    request = ChatRequest(query=question, mode="kb", kb=kb, save=False, max_tokens=max_tokens, temperature=0.0,
                          top_k=3, language="en")
    result = await services.chat.answer(request)
    return result.answer, float(result.timings.get("decode_tokens_per_s", 0.0))


def _prompt_lookup(services: Any, kb: str, max_tokens: int, reps: int) -> dict[str, Any]:
    """KB answers with prompt lookup off and on, alternating; decode tok/s medians and identical answers."""
    rows: dict[str, list[float]] = {"off": [], "on": []}
    same = 0
    engine = services.llm.engine()
    before = dict(engine.totals)
    for i in range(reps):
        question = NEEDLES[i % len(NEEDLES)][2]
        texts = {}
        for flag in ("off", "on"):
            services.llm.set_prompt_lookup(flag == "on")
            texts[flag], tps = asyncio.run(_answer(services, kb, question, max_tokens))
            rows[flag].append(tps)
        same += texts["off"] == texts["on"]
    services.llm.set_prompt_lookup(False)
    off, on = statistics.median(rows["off"]), statistics.median(rows["on"])
    drafted = engine.totals["drafted"] - before["drafted"]
    accepted = engine.totals["accepted"] - before["accepted"]
    print(f"  KB answers: decode {off:.1f} tok/s without prompt lookup, {on:.1f} with; {same}/{reps} identical; "
          f"{accepted}/{drafted} drafted tokens accepted", flush=True)
    return {"decode_tps_off_median": off, "decode_tps_on_median": on, "speedup": on / off,
            "identical_answers": same, "answers": reps, "drafted": drafted, "accepted": accepted, "runs": rows}


async def _llm_alone(services: Any, messages: list[dict[str, Any]], max_tokens: int) -> float:
    """TTFT (ms) of the LLM on these messages, with nothing before it."""
    from zhiku.chat.types import closing
    from zhiku.llm.base import GenerationParams

    t0 = time.perf_counter()
    ttft = 0.0
    async with closing(services.llm.chat(messages, GenerationParams(max_tokens=max_tokens, temperature=0.0))) as s:
        async for d in s:
            if d.text and not ttft:
                ttft = (time.perf_counter() - t0) * 1000
    return ttft


def _scrambled(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = [dict(m) for m in messages]
    last = out[-1]["content"]
    out[-1]["content"] = " ".join(reversed(last.split(" ")))
    return out


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def run(quick: bool, out_dir: Path) -> dict[str, Any]:
    from zhiku import packs
    from zhiku.config import load_settings
    from zhiku.services import Services

    base = load_settings()
    model = os.environ.get("ZHIKU_BENCH_MODEL") or "qwen2.5-coder-0.5b"
    model_path = packs.resolve(base.models_path, model)
    sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
    reps = 2 if quick else 5
    max_tokens = 32 if quick else 64
    home = Path(tempfile.mkdtemp(prefix="zhiku-bench-chat-"))
    # answer_check off: the breakdown times the path to the model's first token; a checked answer is held back
    # until it is whole (README, "The answer check"), which would fold its decode into every TTFT row here
    settings = base.model_copy(update={"home": home, "model": str(model_path), "ctx": 2048, "parallel": 1,
                                       "llm_backend": "llama_cpp", "answer_check": False})
    services = Services(settings)
    rng = np.random.default_rng(0)
    vocab = _vocabulary()
    results: list[dict[str, Any]] = []
    try:
        services.kb.create("bench")
        docs = home / "needles"
        docs.mkdir()
        for fname, text, _q in NEEDLES:
            (docs / fname).write_text(text, encoding="utf-8")
        services.kb.add_files("bench", [docs / f for f, _t, _q in NEEDLES])
        services.llm.start()
        captured: list[list[dict[str, Any]]] = []
        original_chat = services.llm.chat

        def spy(messages: list[dict[str, Any]], *args: Any, **kw: Any) -> Any:
            captured.append(messages)
            return original_chat(messages, *args, **kw)

        services.llm.chat = spy  # type: ignore[method-assign]
        asyncio.run(_ask(services, "bench", NEEDLES[0][2], 4))  # warm: model, embedder, caches
        for size in sizes:
            build_s = _grow(services, "bench", size, vocab, rng)
            t0 = time.perf_counter()
            services.kb.search("bench", "warm the index", top_k=3)  # builds the dense cache / ANN index
            index_s = time.perf_counter() - t0
            runs, alone = [], []
            for i in range(reps):
                _f, _t, question = NEEDLES[i % len(NEEDLES)]
                row = asyncio.run(_ask(services, "bench", question, max_tokens))
                row["needle_found"] = row["top_document"] == NEEDLES[i % len(NEEDLES)][0]
                runs.append(row)
                services.llm.chat = original_chat  # type: ignore[method-assign]
                alone.append(asyncio.run(_llm_alone(services, _scrambled(captured[-1]), max_tokens)))
                services.llm.chat = spy  # type: ignore[method-assign]
            summary = {"chunks": services.kb.get("bench").chunks, "build_s": build_s, "index_s": index_s,
                       **{f"{k}_median": _median(runs, k) for k in
                          ("retrieval_ms", "assembly_ms", "prompt_eval_ms", "ttft_ms", "before_eval_ms",
                           "before_eval_share", "decode_tps", "prompt_tokens")},
                       "llm_alone_ttft_ms_median": float(statistics.median(alone)),
                       "needles_found": sum(r["needle_found"] for r in runs), "runs": runs, "llm_alone_runs": alone}
            results.append(summary)
            print(f"  {summary['chunks']:>7} chunks: TTFT {summary['ttft_ms_median']:.0f} ms "
                  f"(retrieval {summary['retrieval_ms_median']:.1f}, assembly {summary['assembly_ms_median']:.1f}, "
                  f"prompt eval {summary['prompt_eval_ms_median']:.0f}), before eval "
                  f"{summary['before_eval_share_median'] * 100:.1f}%, LLM alone {summary['llm_alone_ttft_ms_median']:.0f} "
                  f"ms, decode {summary['decode_tps_median']:.1f} tok/s", flush=True)
        lookup = _prompt_lookup(services, "bench", 96, 4 if quick else 10)
    finally:
        services.close()
    largest = results[-1]
    out: dict[str, Any] = {
        "model": model, "embedder": settings.embedder, "threads": settings.resolved_threads, "ctx": settings.ctx,
        "reps": reps, "max_tokens": max_tokens, "top_k": 3, "sizes": results,
        "targets": {"before_eval_under_10pct_of_ttft_at_largest": largest["before_eval_share_median"] < 0.10},
        "readme": [
            {"measure": f"KB QA TTFT at {largest['chunks']:,} chunks, ms ({model})", "value": largest["ttft_ms_median"],
             "baseline": f"{largest['llm_alone_ttft_ms_median']:.0f} (LLM alone, same prompt length)"},
            {"measure": "  of which retrieval, ms", "value": largest["retrieval_ms_median"]},
            {"measure": "  of which prompt assembly, ms", "value": largest["assembly_ms_median"]},
            {"measure": "  of which prompt evaluation, ms", "value": largest["prompt_eval_ms_median"]},
            {"measure": "before prompt evaluation, share of TTFT", "value": largest["before_eval_share_median"],
             "baseline": "target < 0.10"},
            {"measure": "KB QA decode tok/s", "value": largest["decode_tps_median"]},
            {"measure": "KB answer decode tok/s with prompt lookup", "value": lookup["decode_tps_on_median"],
             "baseline": f"{lookup['decode_tps_off_median']:.1f} without; {lookup['identical_answers']}/"
                         f"{lookup['answers']} answers identical"},
        ],
        "prompt_lookup": lookup,
    }
    save_area(out_dir, "chat", out, lambda png: _plot(out, png))
    return out


def _plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = summary["sizes"]
    labels = [f"{s['chunks']:,}" for s in sizes]
    parts = [("retrieval_ms_median", "retrieval", "#d95f02"), ("assembly_ms_median", "prompt assembly", "#7570b3"),
             ("prompt_eval_ms_median", "prompt evaluation", "#1b9e77")]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    bottom = np.zeros(len(sizes))
    for key, label, color in parts:
        values = np.array([s[key] for s in sizes])
        ax.bar(labels, values, bottom=bottom, label=label, color=color)
        bottom += values
    other = np.array([s["ttft_ms_median"] for s in sizes]) - bottom
    ax.bar(labels, np.maximum(other, 0), bottom=bottom, label="other (queueing, event loop)", color="#cccccc")
    ax.scatter(labels, [s["llm_alone_ttft_ms_median"] for s in sizes], color="black", marker="_", s=600, zorder=3,
               label="LLM alone, same prompt length")
    for i, s in enumerate(sizes):
        ax.annotate(f"{s['before_eval_share_median'] * 100:.1f}% before eval", (i, s["ttft_ms_median"]),
                    ha="center", va="bottom", fontsize=9)
    ax.set_xlabel("chunks in the knowledge base")
    ax.set_ylabel("time to first token, ms (median)")
    ax.set_title(f"KB QA time to first token, {summary['model']}, {summary['threads']} threads")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    ax.set_ylim(0, max(s["ttft_ms_median"] for s in sizes) * 1.15)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    print(json.dumps(run(quick=False, out_dir=Path(__file__).resolve().parent / "results"), indent=1)[:3000])
