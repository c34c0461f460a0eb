"""`zhiku bench kb`: knowledge-base ingestion throughput and search latency, each against a baseline.

1. Ingestion (real text: SQuAD v1.1 dev paragraphs in English + CMRC 2018 dev paragraphs in Chinese, one
   file per article): chunks/s of zhiku's whole pipeline (parse in a child process, split, segment, embed,
   one transaction per file) against (a) the embedder's own raw throughput on the very same chunk texts,
   (b) a LangChain RecursiveCharacterTextSplitter + FAISS pipeline (Chatchat's stack) with the same embedder.
2. Search latency p50/p99 of bm25, dense and hybrid at 10k, 100k and 1M chunks. Synthetic data (stated):
   Zipf-distributed words (the most frequent ones are real English stop words, as in real text) and
   clustered unit vectors (384-d, like e5-small); query embedding time is excluded (reported apart).
   Dense is exact up to ann_threshold (50k) and HNSW (usearch) above it; ANN recall@10 against exact.
3. Peak memory (max RSS) of the process.
"""

from __future__ import annotations

import gc
import json
import random
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from zhiku.config import Settings
from zhiku.kb import segment
from zhiku.kb.search import Searcher
from zhiku.kb.store import KBRecord, NewChunk, NewDocument, Store
from zhiku.kb.stores import open_store
from zhiku.kb.stores.sqlite import fts
from zhiku.kb.stores.sqlite.store import SQLiteStore, fts_table

from . import _kb_stores as kb_stores

EVALDATA = Path(__file__).resolve().parents[2] / "shared" / "evaldata"
DIM = 384


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pct(samples: list[float]) -> dict[str, float]:
    arr = np.asarray(samples) * 1000
    return {"p50_ms": round(float(np.percentile(arr, 50)), 3), "p99_ms": round(float(np.percentile(arr, 99)), 3),
            "mean_ms": round(float(arr.mean()), 3)}


# ---- 1. ingestion --------------------------------------------------------------------------------

def _write_corpus(folder: Path, max_chars: int) -> int:
    """Articles as .txt files, English and Chinese alternating, until about max_chars characters."""
    folder.mkdir(parents=True, exist_ok=True)
    sets = []
    for rel in ("squad_v1.1_dev/dev-v1.1.json", "cmrc2018_dev/cmrc2018_dev.json"):
        data = json.loads((EVALDATA / rel).read_text(encoding="utf-8"))["data"]
        sets.append([("\n\n".join(p["context"] for p in art["paragraphs"]), art.get("title") or str(i))
                     for i, art in enumerate(data)])
    total, n = 0, 0
    for i in range(max(len(s) for s in sets)):
        for lang, articles in zip(("en", "zh"), sets, strict=True):
            if i < len(articles) and total < max_chars:
                text = articles[i][0]
                (folder / f"{lang}{i:03d}.txt").write_text(text, encoding="utf-8")
                total += len(text)
                n += 1
    return n


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


# ---- 2. search latency ---------------------------------------------------------------------------

STOP = ("the of and to in a is was for on that as with by at from his it an were are which this be or "
        "has had also first its their not but who one after new two they been have more all during").split()


class Synthetic:
    """Zipf text and clustered unit vectors, deterministic."""

    def __init__(self, seed: int = 7, vocab: int = 200_000, clusters: int = 4_000) -> None:
        self.rng = np.random.default_rng(seed)
        ranks = np.arange(1, vocab + 1, dtype=np.float64)
        p = 1.0 / ranks ** 1.07
        self.cdf = np.cumsum(p / p.sum())
        self.words = STOP + [f"w{i:x}" for i in range(vocab - len(STOP))]
        self.centroids = self.rng.standard_normal((clusters, DIM)).astype(np.float32)
        self.centroids /= np.linalg.norm(self.centroids, axis=1, keepdims=True)

    def texts(self, n: int, length: int = 60) -> list[str]:
        idx = np.searchsorted(self.cdf, self.rng.random((n, length)))
        words = self.words
        return [" ".join(words[j] for j in row) for row in idx]

    def vectors(self, n: int, noise: float = 0.9) -> np.ndarray:
        c = self.rng.integers(0, len(self.centroids), n)
        v = self.centroids[c] + noise * self.rng.standard_normal((n, DIM)).astype(np.float32) / np.sqrt(DIM)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        return v.astype(np.float32)


def _fill(store: Store, kb: KBRecord, syn: Synthetic, target: int, have: int,
          exact: list[np.ndarray]) -> None:
    per_doc = 10_000
    while have < target:
        n = min(per_doc, target - have)
        texts, vecs = syn.texts(n), syn.vectors(n)
        store.put_document(kb, NewDocument(f"doc{have // per_doc:05d}.txt", f"{have:064x}", "synthetic", "ok",
                                           None, 0), [NewChunk(t, {"page": None}, store.index_form(t)) for t in texts],
                           vecs)
        exact.append(vecs)
        have += n


def _bm25_agreement(store: SQLiteStore, kb: KBRecord, qtexts: list[str]) -> dict[str, float]:
    """How the SQLite store's BM25 top-10 (pruned above fts.PRUNE_FROM chunks) compares with FTS5's exact
    ranking of every matching chunk, and what the exact ranking costs."""
    overlap, same, exact_s = [], 0, []
    for qt in qtexts:
        terms = segment.query_terms(qt)
        t = time.perf_counter()
        want = [c for c, _ in fts.exact(store.conn, fts_table(kb), terms, 10)]
        exact_s.append(time.perf_counter() - t)
        got = [c for c, _ in store.bm25(kb, terms, 10)]
        overlap.append(len(set(want) & set(got)) / len(want) if want else float(not got))
        same += got == want
    return {"mean_overlap": round(float(np.mean(overlap)), 4), "identical_share": round(same / len(qtexts), 4),
            "exact_p50_ms": _pct(exact_s)["p50_ms"], "exact_p99_ms": _pct(exact_s)["p99_ms"]}


def bench_search(sizes: list[int], work: Path, queries: int = 200, database_url: str = "") -> dict[str, Any]:
    syn = Synthetic()
    settings = Settings(home=work / "home-search", ui=False, database_url=database_url)
    store = open_store(settings)
    kb = store.create_kb(KBRecord(0, "synthetic", "", "synthetic-384", DIM, 500, 100, False, time.time()))
    searcher = Searcher(store)
    chunks: list[np.ndarray] = []
    qrng = random.Random(11)
    out: dict[str, Any] = {}
    have = 0
    for size in sizes:
        t0 = time.perf_counter()
        _fill(store, kb, syn, size, have, chunks)
        have = size
        insert_s = time.perf_counter() - t0
        kb = store.get_kb("synthetic")
        matrix = np.concatenate(chunks)
        ids = store.chunk_ids(kb)
        # Queries: words sampled from real chunks (a mix of common and rare), vectors near real chunks.
        picks = [qrng.randrange(size) for _ in range(queries)]
        qtexts = [" ".join(qrng.sample(syn.texts(1)[0].split(), 5)) for _ in picks]
        qvecs = matrix[picks] + 0.5 * syn.rng.standard_normal((queries, DIM)).astype(np.float32) / np.sqrt(DIM)
        qvecs /= np.linalg.norm(qvecs, axis=1, keepdims=True)
        t0 = time.perf_counter()
        store.prepare(kb)  # what ingestion does: brings the ANN index up to date (above its threshold)
        searcher.dense(kb, qvecs[0], 10)  # loads the exact matrix (below it)
        index_s = time.perf_counter() - t0
        if isinstance(store, SQLiteStore):
            ann = store.dense.uses_ann(kb)
            method = "hnsw (usearch)" if ann else "exact"
        else:  # PostgreSQL: exact below search.ANN_FROM chunks, the base's HNSW index from there
            ann = kb_stores.pg_indexed(store, kb)
            method = "hnsw (pgvector)" if ann else "exact (pgvector)"
        res: dict[str, Any] = {"chunks": size, "dense_method": method,
                               "insert_s": round(insert_s, 1), "index_build_s": round(index_s, 1)}
        timings: dict[str, list[float]] = {"bm25": [], "dense": [], "hybrid": []}
        recall = []
        for qt, qv in zip(qtexts, qvecs, strict=True):
            for mode in timings:
                t = time.perf_counter()
                if mode == "bm25":
                    scored = searcher.bm25(kb, qt, 10)
                elif mode == "dense":
                    scored = searcher.dense(kb, qv, 10)
                else:
                    scored = searcher.hybrid(kb, qt, qv, 10, None, 1.0, 1.0)
                store.fetch(kb, [c for c, _ in scored])  # a search returns texts, so fetching is timed too
                timings[mode].append(time.perf_counter() - t)
                if mode == "dense" and ann:
                    truth = set(ids[np.argpartition(-(matrix @ qv), 10)[:10]].tolist())
                    recall.append(len(truth & {c for c, _ in scored}) / 10)
        for mode, samples in timings.items():
            res[mode] = _pct(samples)
        if isinstance(store, SQLiteStore):
            res["bm25_top10_vs_exact"] = _bm25_agreement(store, kb, qtexts)
        if ann:
            res["ann_recall_at_10"] = round(float(np.mean(recall)), 4)
            t = time.perf_counter()
            for qv in qvecs[:20]:
                np.argpartition(-np.einsum("ij,j->i", matrix, qv), 10)[:10]
            res["exact_dense_mean_ms_for_comparison"] = round((time.perf_counter() - t) / 20 * 1000, 2)
        if isinstance(store, SQLiteStore):
            res["db_mb"] = round(settings.db_path.stat().st_size / 2**20, 1)
        res["max_rss_mb"] = round(_rss_mb(), 1)
        out[str(size)] = res
        print(f"search {size} ({'postgresql' if database_url else 'sqlite'}): {json.dumps(res)}", flush=True)
        del matrix
        gc.collect()
    store.close()
    return out


def bench_query_embedding(spec: str, n: int = 30) -> dict[str, float]:
    from zhiku.embed.registry import get_embedder

    emb = get_embedder(spec, Settings(ui=False))
    emb.embed_queries(["warm up"])
    samples = []
    for i in range(n):
        t = time.perf_counter()
        emb.embed_queries([f"长城有多长？ How long is the Great Wall, question {i}?"])
        samples.append(time.perf_counter() - t)
    return _pct(samples)


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
    return rows[:12] + kb_stores.readme_rows(summary)


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
