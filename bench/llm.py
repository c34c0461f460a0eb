"""LLM serving speed: zhiku's server beside llama-cpp-python's own server on the same GGUF, in one run.

`zhiku bench llm [--quick]` (or `python -m bench.llm`). For the configured model (the default pack) and
smollm2-135m, both servers run as processes on loopback ports (bench/_peer.py) with the same context and
threads; the same greedy prompts go to both, runs alternate between them (the order rotates each round) so
that drift on a shared machine hits all alike, and medians are reported, with the per-round ratios:

- 1 / 4 / 8 concurrent streams ("Write a long story about dragon number i."): aggregate tokens/s (all
  tokens / wall time from the first request to the last text); for one stream also decode tokens/s (tokens
  after the first / time from the first text to the last) and time to first token; at one stream zhiku with
  prompt lookup off joins. The peer runs with zhiku's OpenMP wait policy (PASSIVE) and, without --quick, also
  as a user starts it (the OpenMP default: threads spin at barriers); see the note at PEERS.
- KB-QA prompts (instructions + three SQuAD passages, a new question each time): time to first token and
  decode tokens/s, zhiku with and without prompt lookup, and the peer.

Tokens are counted the same way for every server: the streamed text re-tokenised with the model's tokenizer.
Without --quick the run adds (bench/_serving.py) batched vs separate contexts vs a plain low-level batched loop,
and chat decoding while the embedder embeds. Writes llm-<stamp>.json and .png under bench/results.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import zhiku  # noqa: F401 - first: it sets the OpenMP wait policy before llama.cpp loads

from ._serving import KB_HEAD, kb_messages
from .report import save_area

STREAMS = (1, 4, 8)
# PEERS: the peer as a user starts it spins OpenMP threads at barriers; on a shared, loaded machine that collapses
# it (0.1-0.2 tok/s at load 20, 3.7 at load 4 where zhiku decoded 46, as zhiku's decoding did before it set
# PASSIVE), so --quick compares with the peer under zhiku's PASSIVE policy only. The full run compares a lone
# stream with both (its target with the stock peer); several streams and KB answers are compared with the
# PASSIVE peer, the stricter baseline (the stock one, serving one request at a time, aggregates at most its
# lone rate: zhiku_over_stock_bound), because the stock peer's 8 x 128 tokens took minutes per round.
SQUAD = [Path(__file__).resolve().parents[n] / "shared" / "evaldata" / "squad_v1.1_dev" / "dev-v1.1.json"
         for n in (2, 3)]


def story(i: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": f"Write a long story about dragon number {i}."}]


def kb_material() -> tuple[list[str], list[str]]:
    """Three passages of one SQuAD article and questions on them (a KB-QA-shaped prompt), or made-up ones."""
    for path in SQUAD:
        if path.exists():
            article = json.loads(path.read_text(encoding="utf-8"))["data"][0]
            paras = article["paragraphs"][:3]
            return [p["context"][:600] for p in paras], [qa["question"] for p in paras for qa in p["qas"]][:8]
    passage = ("The Saltmarsh lighthouse keeper is Oswin Fairweather; he has kept the light since 1987 and repaints "
               "the tower every spring, when the harbour fills with fishing boats and the ferry timetable changes. ")
    return [passage * 3] * 3, [f"Question {i}: who keeps the light, and since when?" for i in range(8)]


def _rotate(names: list[str], k: int) -> list[str]:
    k %= len(names)
    return names[k:] + names[:k]


def _med(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _paired(runs: dict[str, list[dict[str, Any]]], a: str, b: str, key: str) -> float:
    """Median over rounds of a's figure / b's figure in the same round."""
    return statistics.median(x[key] / y[key] for x, y in zip(runs[a], runs[b], strict=True))


def bench_pack(path: Path, threads: int, ctx: int, max_tokens: int, reps: int, questions: int,
               peers: list[str]) -> dict[str, Any]:
    """`peers`: the peer servers to run, the first being the one a lone stream is compared with, the last the
    one several streams and KB answers are compared with (see PEERS)."""
    from bench import _peer

    peer, multi = peers[0], peers[-1]
    solo, kb_names = ["zhiku", "zhiku_nolookup", *peers], ["zhiku", "zhiku_nolookup", multi]
    count = _peer.tokenizer(path)
    passages, qs = kb_material()
    out: dict[str, Any] = {"peer": peer, "multi_peer": multi, "streams": {}, "kb": {}}
    with _peer.servers(path, threads, ctx, max(STREAMS), solo) as srv:
        for s in srv.values():  # warm: page cache, first allocations
            _peer.stream(s, story(0), 8)
        for n in STREAMS:
            names = solo if n == 1 else ["zhiku", multi]
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
            for rep in range(reps):
                prompts = [story(100 * (n * reps + rep) + i) for i in range(n)]
                for name in _rotate(names, rep):
                    runs[name].append(_peer.concurrent(srv[name], prompts, max_tokens, count))
                    del runs[name][-1]["texts"]
                print(f"  {path.stem} {n} stream(s): " + ", ".join(
                    f"{k} {v[-1]['aggregate_tps']:.1f}" for k, v in runs.items()) + f" tok/s (load {os.getloadavg()[0]:.1f})",
                    flush=True)
            row: dict[str, Any] = {"runs": runs, "aggregate_tps": {k: _med(v, "aggregate_tps") for k, v in runs.items()},
                                   "zhiku_over_peer": _paired(runs, "zhiku", peer if n == 1 else multi, "aggregate_tps")}
            if n > 1 and multi != peer:  # the stock peer serves one request at a time: at most its lone rate
                row["zhiku_over_stock_bound"] = row["aggregate_tps"]["zhiku"] / out["streams"][1]["aggregate_tps"][peer]
            if n == 1:
                row["decode_tps"] = {k: _med(v, "decode_tps") for k, v in runs.items()}
                row["ttft_s"] = {k: _med(v, "ttft_s") for k, v in runs.items()}
                row["decode_ratio"] = {k: _paired(runs, k, peer, "decode_tps") for k in names if k != peer}
            out["streams"][n] = row
        for name in kb_names:  # the first KB prompt fills every server's cache with the passages
            _peer.stream(srv[name], kb_messages(passages, "warm"), 1)
        kb: dict[str, list[dict[str, Any]]] = {name: [] for name in kb_names}
        for i, q in enumerate(qs[:questions]):
            for name in _rotate(kb_names, i):
                kb[name].append(_peer.concurrent(srv[name], [kb_messages(passages, q)], max_tokens, count))
        out["kb"] = {"runs": kb, "prompt_tokens": count(KB_HEAD + "".join(passages)),
                     "ttft_s": {k: _med(v, "ttft_s") for k, v in kb.items()},
                     "decode_tps": {k: _med(v, "decode_tps") for k, v in kb.items()},
                     "lookup_speedup": _paired(kb, "zhiku", "zhiku_nolookup", "decode_tps"),
                     "lookup_same_text": sum(a["texts"] == b["texts"] for a, b in zip(kb["zhiku"], kb["zhiku_nolookup"],
                                                                                      strict=True))}
        print(f"  {path.stem} KB-QA TTFT " + ", ".join(f"{k} {v:.2f} s" for k, v in out["kb"]["ttft_s"].items()),
              flush=True)
    agg = {n: out["streams"][n]["aggregate_tps"]["zhiku"] for n in STREAMS}
    out["zhiku_8_over_1"] = agg[8] / agg[1]
    return out


def run(quick: bool, out_dir: Path) -> dict[str, Any]:
    """Both packs by default; ZHIKU_BENCH_PACKS=a,b picks packs, ZHIKU_BENCH_PARTS=0 skips the in-process parts
    and ZHIKU_BENCH_REPS / ZHIKU_BENCH_QUESTIONS set the rounds and KB questions, so that a full run can be
    split into pieces short enough for a shared machine (see merge)."""
    from zhiku import packs
    from zhiku.config import load_settings

    settings = load_settings()
    name = os.environ.get("ZHIKU_BENCH_MODEL") or settings.model
    wanted = [p for p in os.environ.get("ZHIKU_BENCH_PACKS", "").split(",") if p] or [name, "smollm2-135m"]
    threads, ctx = settings.resolved_threads, 2048
    max_tokens, reps, questions = (48, 3, 3) if quick else (128, 5, 8)
    reps = int(os.environ.get("ZHIKU_BENCH_REPS", reps))
    questions = int(os.environ.get("ZHIKU_BENCH_QUESTIONS", questions))
    peers = ["peer_passive"] if quick else ["peer", "peer_passive"]
    load_before = os.getloadavg()
    results: dict[str, Any] = {}
    for pack in dict.fromkeys(wanted):
        results[pack] = bench_pack(packs.resolve(settings.models_path, pack), threads, ctx, max_tokens, reps, questions,
                                     peers)
    extra: dict[str, Any] = {}
    if not quick and os.environ.get("ZHIKU_BENCH_PARTS", "1") != "0":
        extra = _engine_parts(packs.resolve(settings.models_path, name), threads, max_tokens)
    summary = summarize({
        "model": name, "threads": threads, "ctx": ctx, "max_tokens": max_tokens, "reps": reps,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""), "gomp_spincount": os.environ.get("GOMP_SPINCOUNT", ""),
        "load_before": load_before,
        "load_after": os.getloadavg(), "packs": results, **extra})
    save_area(out_dir, "llm", summary, lambda png: _plot(summary, png))
    return summary


def summarize(summary: dict[str, Any]) -> dict[str, Any]:
    """Add the targets and the README rows to a summary from its packs' results."""
    results = summary["packs"]
    targets: dict[str, bool] = {}
    readme: list[dict[str, Any]] = []
    for pack, r in results.items():
        one, four, peer, multi = r["streams"][1], r["streams"][4], r["peer"], r.get("multi_peer", r["peer"])
        targets[f"{pack}: 1 stream >= 0.95 x peer"] = one["decode_ratio"]["zhiku"] >= 0.95
        targets[f"{pack}: 4 streams >= 1.5 x peer"] = four["zhiku_over_peer"] >= 1.5
        readme.append({"measure": f"1 stream decode tok/s ({pack}), zhiku / llama_cpp.server",
                       "value": one["decode_tps"]["zhiku"],
                       "baseline": f"{one['decode_tps'][peer]:.1f} {peer} (ratio {one['decode_ratio']['zhiku']:.2f})"})
        readme.append({"measure": f"aggregate tok/s, 4 / 8 streams ({pack})",
                       "value": f"{four['aggregate_tps']['zhiku']:.1f} / {r['streams'][8]['aggregate_tps']['zhiku']:.1f}",
                       "baseline": f"{multi} {four['aggregate_tps'][multi]:.1f} / {r['streams'][8]['aggregate_tps'][multi]:.1f}"
                                   f" (x{four['zhiku_over_peer']:.2f} / x{r['streams'][8]['zhiku_over_peer']:.2f})"})
        kb = r["kb"]
        readme.append({"measure": f"KB-QA TTFT s / decode tok/s ({pack})",
                       "value": f"{kb['ttft_s']['zhiku']:.2f} / {kb['decode_tps']['zhiku']:.1f}",
                       "baseline": f"{multi} {kb['ttft_s'][multi]:.2f} / {kb['decode_tps'][multi]:.1f}; no lookup "
                                   f"{kb['ttft_s']['zhiku_nolookup']:.2f} / {kb['decode_tps']['zhiku_nolookup']:.1f}"})
    if "smollm2-135m" in results:
        targets["smollm2-135m: 8 streams >= 2.3 x 1 stream"] = results["smollm2-135m"]["zhiku_8_over_1"] >= 2.3
    return {**summary, "targets": targets, "readme": readme}


def merge(parts: list[Path], out_dir: Path) -> Path:
    """One summary (and combined bench file, as `zhiku bench` writes) from runs of separate packs."""
    from zhiku.eval.report import machine

    loaded = [json.loads(p.read_text(encoding="utf-8")) for p in parts]
    first = loaded[0]
    packs_ = {k: v for d in loaded for k, v in d["packs"].items()}
    for d in loaded:  # JSON made the stream counts strings
        for r in d["packs"].values():
            r["streams"] = {int(n): row for n, row in r["streams"].items()}
    extra = next(({k: d[k] for k in ("engine_aggregate", "ingestion") if k in d} for d in loaded
                  if "engine_aggregate" in d), {})
    summary = summarize({**{k: first[k] for k in ("model", "threads", "ctx", "max_tokens", "reps",
                                                   "omp_wait_policy")},
                         "load_before": first["load_before"], "load_after": loaded[-1]["load_after"],
                         "loads": {p.name: [d["load_before"], d["load_after"]] for p, d in zip(parts, loaded, strict=True)},
                         "merged_from": [p.name for p in parts], "packs": packs_, **extra})
    save_area(out_dir, "llm", summary, lambda png: _plot(summary, png))
    info = machine()
    from zhiku.commands.bench import machine_slug

    path = out_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{machine_slug(info['cpu'], info['cores'])}.json"
    combined = {"kind": "bench", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": False, "machine": info,
                "areas": {"llm": summary}}
    path.write_text(json.dumps(combined, ensure_ascii=False, indent=1, default=str) + "\n", encoding="utf-8")
    return path


def _engine_parts(path: Path, threads: int, max_tokens: int) -> dict[str, Any]:
    """The in-process parts of the full run: the batched engine's limit and chat during ingestion."""
    from bench import _serving

    passages, _ = kb_material()
    return {"engine_aggregate": _serving.aggregate(path, threads, max_tokens, (1, 2, 4, 8)),
            "ingestion": _serving.during_ingestion(path, threads, passages * 40, max_tokens, 3)}


def _plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    packs = list(summary["packs"])
    fig, axes = plt.subplots(2, len(packs), figsize=(6 * len(packs), 8), squeeze=False)
    colors = {"zhiku": "#2a7ab0", "zhiku_nolookup": "#7fb8dc", "peer": "#d95f02", "peer_passive": "#f4a582"}
    for col, pack in enumerate(packs):
        r = summary["packs"][pack]
        ax = axes[0][col]
        xs = [str(n) for n in STREAMS]
        for who in ("zhiku", r.get("multi_peer", r["peer"])):
            ys = [r["streams"][n]["aggregate_tps"][who] for n in STREAMS]
            ax.plot(xs, ys, marker="o", color=colors[who], label="zhiku serve" if who == "zhiku" else f"llama_cpp.server ({who})")
            for x, y in zip(xs, ys, strict=True):
                ax.annotate(f"{y:.1f}", (x, y), ha="center", va="bottom", fontsize=8)
        ax.set(xlabel="concurrent streams", ylabel="aggregate tokens/s (median)", title=f"{pack}, {summary['threads']} threads")
        ax.set_ylim(0, None)
        ax.legend(fontsize=8)
        ax = axes[1][col]
        one, kb = r["streams"][1]["decode_tps"], r["kb"]["decode_tps"]
        labels = list(one)
        width = 0.4
        for k, (title, data) in enumerate((("1 stream", one), ("KB-QA", kb))):
            xs2 = [i + (k - 0.5) * width for i in range(len(labels))]
            vals = [data.get(lab, 0.0) for lab in labels]
            ax.bar(xs2, vals, width, label=title, color=[colors[lab] for lab in labels], alpha=1.0 if k == 0 else 0.55,
                   edgecolor="black" if k else None, hatch="//" if k else None)
            for x, v in zip(xs2, vals, strict=True):
                if v:
                    ax.annotate(f"{v:.1f}", (x, v), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(labels)), [lab.replace("_", "\n") for lab in labels], fontsize=8)
        ax.set(ylabel="decode tokens/s (median)", title="one stream (plain) and KB-QA (hatched)")
    fig.suptitle(f"zhiku vs llama_cpp.server, load {summary['load_before'][0]:.1f} -> {summary['load_after'][0]:.1f}, "
                 f"{time.strftime('%Y-%m-%d %H:%M')}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    import sys

    results_dir = Path(__file__).resolve().parent / "results"
    if sys.argv[1:2] == ["--merge"]:  # python -m bench.llm --merge llm-A.json llm-B.json
        print(merge([Path(a) for a in sys.argv[2:]], results_dir))
    else:
        print(json.dumps(run(quick="--quick" in sys.argv, out_dir=results_dir), indent=1)[:3000])
