"""Before/after of the PostgreSQL store's search and ingestion changes, in one run on the same data.

    python -m bench._kb_pg_before [REV]      (from the source checkout; REV defaults to BEFORE)

- search: the store's search module as it was at REV (read from git) against the current one, on bench/kb.py's
  synthetic base at 10k and 100k chunks (the same rows and index), the two alternating query by query;
  bm25 and dense at k 50 (what hybrid asks each for) and hybrid top 10 with the chunks fetched, as bench/kb.py;
  and the current hybrid with its two lists one after the other and at once (Store.concurrent_searches);
- ingestion: the whole pipeline (use-m3) into SQLite, into PostgreSQL as now, and into PostgreSQL with the HNSW
  index kept from the first chunk as at REV (_kb_stores.bench_store_ingestion), interleaved, medians.
Writes bench/results/kb-pg-before-after-<stamp>.json.
"""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from zhiku.config import Settings
from zhiku.kb.search import MIN_CANDIDATES, Searcher, rrf
from zhiku.kb.store import KBRecord
from zhiku.kb.stores import open_store

from . import _kb_stores as kb_stores
from ._kb_corpus import pct as _pct
from ._kb_search import DIM, Synthetic, _fill, pg_indexed

BEFORE = "8528d82"  # main before the index and BM25 changes of issue 12's second pass
ROOT = Path(__file__).resolve().parents[1]


def _module_at(rev: str, work: Path) -> Any:
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:src/zhiku/kb/stores/postgres/search.py"],
                            check=True, capture_output=True, text=True).stdout
    path = work / "search_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("search_before", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _arms(store: Any, kb: KBRecord, before: Any) -> dict[str, dict[str, Any]]:
    """bm25 and dense lists (k 50, what hybrid asks each for) through the old module and the current store."""
    def old(fn: Any, arg: Any) -> Any:
        with store.pool.connection() as conn:
            return fn(conn, kb, arg, MIN_CANDIDATES, None)

    return {"before": {"bm25": lambda qt, qv: old(before.bm25, qt), "dense": lambda qt, qv: old(before.dense, qv)},
            "after": {"bm25": lambda qt, qv: store.text_search(kb, qt, MIN_CANDIDATES),
                      "dense": lambda qt, qv: store.vector_search(kb, qv, MIN_CANDIDATES)}}


def _one_after_the_other_or_at_once(store: Any, kb: KBRecord, qtexts: list[str], qvecs: np.ndarray) -> dict[str, Any]:
    """The current Searcher.hybrid (top 10, chunks fetched) with its two lists in turn and at once, alternating."""
    searcher, times, same = Searcher(store), {False: [], True: []}, 0
    for i, (qt, qv) in enumerate(zip(qtexts, qvecs, strict=True)):
        got = {}
        for at_once in ((True, False) if i % 2 else (False, True)):
            store.concurrent_searches = at_once
            t = time.perf_counter()
            got[at_once] = searcher.hybrid(kb, qt, qv, 10, None, 1.0, 1.0)
            store.fetch(kb, [c for c, _ in got[at_once]])
            times[at_once].append(time.perf_counter() - t)
        same += got[True] == got[False]
    del store.concurrent_searches  # back to the class's own
    return {"in_turn": _pct(times[False]), "at_once": _pct(times[True]), "identical_share": same / len(qtexts)}


def _searches(url: str, work: Path, before: Any, sizes: list[int], queries: int = 100) -> dict[str, Any]:
    store: Any = open_store(Settings(home=work / "home", ui=False, database_url=url))
    kb = store.create_kb(KBRecord(0, "synthetic", "", "synthetic-384", DIM, 500, 100, False, time.time()))
    syn, chunks, have, qrng, out = Synthetic(), [], 0, random.Random(11), {}

    for size in sizes:
        _fill(store, kb, syn, size, have, chunks)
        have = size
        kb = store.get_kb("synthetic")
        store.prepare(kb)
        matrix = np.concatenate(chunks)
        picks = [qrng.randrange(size) for _ in range(queries)]
        qtexts = [" ".join(qrng.sample(syn.texts(1)[0].split(), 5)) for _ in picks]
        qvecs = matrix[picks] + 0.5 * syn.rng.standard_normal((queries, DIM)).astype(np.float32) / np.sqrt(DIM)
        qvecs /= np.linalg.norm(qvecs, axis=1, keepdims=True)
        arms = _arms(store, kb, before)
        times: dict[str, dict[str, list[float]]] = {a: {"bm25": [], "dense": [], "hybrid": []} for a in arms}
        same_bm25 = 0
        for i, (qt, qv) in enumerate(zip(qtexts, qvecs, strict=True)):
            got = {}
            for arm in (("before", "after") if i % 2 == 0 else ("after", "before")):
                fns = arms[arm]
                for mode in ("bm25", "dense"):
                    t = time.perf_counter()
                    got[arm, mode] = fns[mode](qt, qv)
                    times[arm][mode].append(time.perf_counter() - t)
                t = time.perf_counter()
                fused = rrf([(1.0, fns["bm25"](qt, qv)), (1.0, fns["dense"](qt, qv))], 10)
                store.fetch(kb, [c for c, _ in fused])
                times[arm]["hybrid"].append(time.perf_counter() - t)
            same_bm25 += [c for c, _ in got["before", "bm25"]] == [c for c, _ in got["after", "bm25"]]
        res = {arm: {mode: _pct(v) for mode, v in t.items()} for arm, t in times.items()}
        res["bm25_top50_identical_share"] = same_bm25 / queries
        res["hybrid_lists"] = _one_after_the_other_or_at_once(store, kb, qtexts, qvecs)
        res["dense_method"] = "hnsw (pgvector)" if pg_indexed(store, kb) else "exact (pgvector)"
        out[str(size)] = res
        print(f"search {size}: {json.dumps(res)}", flush=True)
    return out


def main(rev: str = BEFORE) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="zhiku-bench-pgba-"))
    summary: dict[str, Any] = {"before": rev, "after": subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()}
    try:
        with kb_stores.local_postgres() as url:
            summary["search"] = _searches(url, work, _module_at(rev, work), [10_000, 100_000])
            summary["ingestion"] = kb_stores.bench_store_ingestion(url, work, hnsw_from_start=True)
            print(f"ingestion: {json.dumps(summary['ingestion'])}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = ROOT / "bench" / "results" / f"kb-pg-before-after-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(summary, indent=2))
    print(f"wrote {path}")
    return summary


if __name__ == "__main__":
    main(*sys.argv[1:2])
