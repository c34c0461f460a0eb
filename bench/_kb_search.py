"""Search latency of the stores for `zhiku bench kb`: p50/p99 of bm25, dense and hybrid at 10k, 100k and 1M
chunks of synthetic data (stated): Zipf-distributed words (the most frequent ones are real English stop words,
as in real text) and clustered unit vectors (384-d, like e5-small); query embedding time is excluded (reported
apart). Dense is exact up to ann_threshold (50k) and HNSW (usearch) above it; ANN recall@10 against exact.
"""

from __future__ import annotations

import gc
import json
import random
import time
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

from ._kb_corpus import pct as _pct
from ._kb_corpus import rss_mb as _rss_mb

DIM = 384


def pg_indexed(store: Any, kb: Any) -> bool:
    from zhiku.kb.stores.postgres import search

    with store.pool.connection() as conn:
        return search.has_index(conn, kb.id)


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
            ann = pg_indexed(store, kb)
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
