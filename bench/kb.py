"""`zhiku bench kb`: knowledge-base ingestion throughput and search latency, each against a baseline.

1. Ingestion (real text: SQuAD v1.1 dev paragraphs in English + CMRC 2018 dev paragraphs in Chinese, one
   file per article): chunks/s of zhiku's whole pipeline (parse in a child process, split, segment, embed,
   one transaction per file) against (a) the embedder's own raw throughput on the very same chunk texts,
   (b) a LangChain RecursiveCharacterTextSplitter + FAISS pipeline (Chatchat's stack) with the same embedder.
2. Search latency p50/p99 of bm25, dense and hybrid at 10k, 100k and 1M chunks of synthetic data
   (_kb_search.py), and the PostgreSQL store beside SQLite (_kb_stores.py).
3. Upload to BM25-searchable and to fully embedded, two-phase against one-phase (_kb_phases.py).
4. Peak memory (max RSS) of the process.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from zhiku.config import Settings

from . import _kb_phases as kb_phases
from . import _kb_stores as kb_stores
from ._kb_corpus import rss_mb as _rss_mb
from ._kb_corpus import write_corpus as _write_corpus
from ._kb_search import bench_query_embedding, bench_search

# ---- 1. ingestion --------------------------------------------------------------------------------

def _langchain_pipeline(folder: Path, embedder: Any, chunk_size: int, overlap: int) -> dict[str, float]:
    """Chatchat's stack: read, RecursiveCharacterTextSplitter (its Chinese separators), embed, FAISS add."""
    import faiss
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from zhiku.embed.batching import embed_in_batches

    start = time.perf_counter()
    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=overlap,
                                              separators=["\n\n", "\n", "。", "！", "？", ". ", "! ", "? ",
                                                          "；", "; ", "，", ", ", " ", ""])
    texts: list[str] = []
    for f in sorted(folder.iterdir()):
        texts += splitter.split_text(f.read_text(encoding="utf-8"))
    vecs = embed_in_batches(embedder, texts)
    index = faiss.IndexFlatIP(embedder.dim)
    index.add(vecs)
    seconds = time.perf_counter() - start
    return {"chunks": len(texts), "chars": sum(map(len, texts)), "seconds": seconds,
            "chunks_per_s": len(texts) / seconds}


def bench_ingestion(embedder_spec: str, max_chars: int, work: Path, reps: int = 3) -> dict[str, Any]:
    """The three pipelines run interleaved `reps` times and their medians compared, so that load from
    other processes on the machine hits all three alike."""
    from zhiku.embed.batching import raw_throughput
    from zhiku.embed.registry import get_embedder
    from zhiku.kb.loaders import load
    from zhiku.kb.service import KBService
    from zhiku.kb.splitter import split

    corpus = work / f"corpus-{embedder_spec}"
    files = _write_corpus(corpus, max_chars)
    settings = Settings(home=work / f"home-{embedder_spec}", embedder=embedder_spec, ui=False)
    emb = get_embedder(embedder_spec, settings)
    emb.embed_passages(["warm up 预热"] * 4)
    # The same chunk texts zhiku will embed: the embedder's raw speed on them is the ceiling.
    texts = [d.text for f in sorted(corpus.iterdir())
             for d in split(load(f).sections, settings.chunk_size, settings.chunk_overlap)]
    runs: dict[str, list[dict[str, float]]] = {"raw_embedder": [], "pipeline": [], "langchain_faiss": []}
    svc = KBService(settings)

    def raw_run() -> dict[str, float]:
        raw = raw_throughput(emb, texts, warmup=0)
        return {"chunks": len(texts), "chars": sum(map(len, texts)), "seconds": raw["seconds"],
                "chunks_per_s": raw["passages_per_s"]}

    def pipeline_run() -> dict[str, float]:
        name = f"bench{len(runs['pipeline'])}"
        svc.create(name)
        start = time.perf_counter()
        docs = svc.add_files(name, [corpus])
        seconds = time.perf_counter() - start
        chunks = sum(d.chunk_count for d in docs)
        chars = sum(len(c["text"]) for d in docs for c in svc.chunks(name, d.id))
        svc.delete(name)
        return {"files": files, "chunks": chunks, "chars": chars, "seconds": seconds, "chunks_per_s": chunks / seconds}

    def langchain_run() -> dict[str, float]:
        return _langchain_pipeline(corpus, emb, settings.chunk_size, settings.chunk_overlap)

    order = [("raw_embedder", raw_run), ("pipeline", pipeline_run), ("langchain_faiss", langchain_run)]
    try:
        for rep in range(reps):
            # Rotate the order each repetition: load that drifts during the run then favours no one.
            for key, fn in order[rep % 3:] + order[:rep % 3]:
                runs[key].append(fn())
    finally:
        svc.close()
    med = {k: float(np.median([r["chunks_per_s"] for r in v])) for k, v in runs.items()}
    return {"embedder": emb.id, "corpus_chars": sum(len(t) for t in texts), "files": files, "reps": reps,
            **{k: {"chunks": v[0]["chunks"], "chars": v[0]["chars"], "median_chunks_per_s": round(med[k], 2),
                   "median_chars_per_s": round(float(np.median([r["chars"] / r["seconds"] for r in v])), 1),
                   "runs_chunks_per_s": [round(r["chunks_per_s"], 2) for r in v]} for k, v in runs.items()},
            "pipeline_vs_raw": round(med["pipeline"] / med["raw_embedder"], 3),
            "pipeline_vs_langchain": round(med["pipeline"] / med["langchain_faiss"], 3)}


# ---- report --------------------------------------------------------------------------------------

def _plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    ing = summary["ingestion"]
    labels, values = [], []
    for r in ing:
        for key, name in (("raw_embedder", "raw"), ("pipeline", "zhiku"), ("langchain_faiss", "LangChain+FAISS")):
            labels.append(f"{r['embedder']}\n{name}")
            values.append(r[key]["median_chunks_per_s"])
    ax1.bar(labels, values, color=["#999", "#2a7", "#c63"] * len(ing))
    ax1.set_ylabel("chunks / s")
    ax1.set_title("ingestion throughput")
    ax1.tick_params(axis="x", labelsize=8)
    sizes = list(summary["search"])
    x = np.arange(len(sizes))
    series = [(f"{mode} p50", [summary["search"][s][mode]["p50_ms"] for s in sizes]) for mode in ("bm25", "dense", "hybrid")]
    if all("bm25_top10_vs_exact" in summary["search"][s] for s in sizes):  # the baseline: FTS5 ranking everything
        series.insert(1, ("bm25 exact FTS5 p50", [summary["search"][s]["bm25_top10_vs_exact"]["exact_p50_ms"]
                                                  for s in sizes]))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series):
        ax2.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label)
    ax2.set_xticks(x, [f"{int(s):,}" for s in sizes])
    ax2.set_yscale("log")
    ax2.set_ylabel("ms (log)")
    ax2.set_xlabel("chunks")
    ax2.set_title("search latency p50")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _readme_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The lines of the README's performance table (at most 12)."""
    rows: list[dict[str, Any]] = []
    for r in summary["ingestion"]:
        raw, lc = r["raw_embedder"], r["langchain_faiss"]
        rows.append({"measure": f"ingestion chunks/s, {r['embedder']}", "value": r["pipeline"]["median_chunks_per_s"],
                     "baseline": f"{raw['median_chunks_per_s']:.4g} (embedder alone on the same chunks; "
                                 f"ratio {r['pipeline_vs_raw']:.3g}, target >= 0.85)"})
        # LangChain's splitter makes fewer, longer chunks from the same files: compare per character.
        rows.append({"measure": f"ingestion characters/s, {r['embedder']}", "value": r["pipeline"]["median_chars_per_s"],
                     "baseline": f"{lc['median_chars_per_s']:.6g} (LangChain splitter + FAISS, same embedder)"})
    s = summary["search"]
    targets = {"100000": " (target <= 20)", "1000000": " (target <= 50)"}
    for size, res in s.items():
        rows.append({"measure": f"hybrid search p50 / p99 ms, {int(size):,} chunks",
                     "value": f"{res['hybrid']['p50_ms']:.3g} / {res['hybrid']['p99_ms']:.3g}",
                     "baseline": f"bm25 {res['bm25']['p50_ms']:.3g}, dense {res['dense']['p50_ms']:.3g} "
                                 f"({res['dense_method']}){targets.get(size, '')}"})
    big = s[max(s, key=int)]
    agree = big["bm25_top10_vs_exact"]
    rows.append({"measure": f"BM25 top-10 overlap with exact FTS5 ranking, {int(big['chunks']):,} chunks",
                 "value": agree["mean_overlap"], "baseline": f"exact p50 / p99 {agree['exact_p50_ms']:.3g} / "
                                                             f"{agree['exact_p99_ms']:.4g} ms"})
    if "ann_recall_at_10" in big:
        rows.append({"measure": f"HNSW recall@10, {int(big['chunks']):,} chunks", "value": big["ann_recall_at_10"],
                     "baseline": f"target >= 0.95; exact dense {big['exact_dense_mean_ms_for_comparison']:.3g} ms"})
        rows.append({"measure": f"HNSW index build s, {int(big['chunks']):,} chunks", "value": big["index_build_s"]})
    rows.append({"measure": "peak memory (max RSS), MB", "value": summary["peak_rss_mb"]})
    return rows[:12] + kb_stores.readme_rows(summary) + kb_phases.readme_rows(summary.get("phases", {}))


def run(quick: bool, out_dir: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = Path(tempfile.mkdtemp(prefix="zhiku-bench-kb-"))
    summary: dict[str, Any] = {"quick": quick, "machine": {"cpus": __import__("os").cpu_count()}}
    try:
        plans = [("use-m3", 150_000)] if quick else [("use-m3", 300_000), ("e5-small", 60_000)]
        summary["ingestion"] = []
        for spec, chars in plans:
            log(f"ingestion with {spec} ({chars:,} characters)...")
            r = bench_ingestion(spec, chars, work, reps=1 if quick else 3)
            log(json.dumps(r))
            summary["ingestion"].append(r)
        summary["query_embedding"] = {spec: bench_query_embedding(spec) for spec, _ in plans}
        log("upload to searchable and to embedded: two-phase against one-phase ingestion...")
        summary["phases"] = kb_phases.bench_phases(work, quick, log)
        kb_phases.plot(summary["phases"], out_dir / f"kb-phases-{stamp}.png")
        sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
        log(f"search latency at {sizes}...")
        summary["search"] = bench_search(sizes, work)
        summary["postgres"] = kb_stores.bench_postgres([s for s in sizes if s <= 100_000], work, log)
        summary["peak_rss_mb"] = round(_rss_mb(), 1)
        s = summary["search"]
        summary["targets"] = {
            "pipeline_vs_raw_>=0.85": all(r["pipeline_vs_raw"] >= 0.85 for r in summary["ingestion"]),
            "hybrid_p50_100k_<=20ms": s["100000"]["hybrid"]["p50_ms"] <= 20,
            "hybrid_p50_1M_<=50ms": s["1000000"]["hybrid"]["p50_ms"] <= 50 if "1000000" in s else None,
            "ann_recall_at_10_>=0.95": all(v.get("ann_recall_at_10", 1) >= 0.95 for v in s.values()),
        }
        summary["readme"] = _readme_rows(summary)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    json_path = out_dir / f"kb-{stamp}.json"
    json_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    _plot(summary, out_dir / f"kb-{stamp}.png")
    log(f"wrote {json_path} and {json_path.with_suffix('.png')}")
    return summary


if __name__ == "__main__":
    import sys

    run("--quick" in sys.argv, Path(__file__).resolve().parent / "results")
