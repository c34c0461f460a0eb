"""The PostgreSQL + pgvector store beside SQLite, for `zhiku bench kb` (same data, same run).

A throw-away PostgreSQL 16.2 + pgvector 0.6.2 (the `pgserver` wheel's binaries) is started on a loopback
port for the run, as user `postgres` when run as root, unless ZHIKU_BENCH_DATABASE_URL names one.
Measured: ingestion chunks/s of the whole pipeline into each store (use-m3, interleaved reps, medians),
and the search latencies and HNSW recall@10 of bench_search on the PostgreSQL store (exact below
search.ANN_FROM chunks; the synthetic base is loaded as 10k-chunk documents, so from 10k on each one drops
the index and prepare builds it again after the load: insert_s and index_build_s).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from zhiku.config import Settings


@contextmanager
def local_postgres() -> Iterator[str]:
    given = os.environ.get("ZHIKU_BENCH_DATABASE_URL")
    if given:
        yield given
        return
    from zhiku.local_postgres import LocalPostgres

    # Durable settings as a server would run (fsync on); shared_buffers sized for 100k 384-d vectors.
    pg = LocalPostgres(options="-c shared_buffers=512MB -c maintenance_work_mem=512MB", prefix="zhiku-bench-pg-")
    try:
        pg.start()
        import psycopg

        with psycopg.connect(pg.url + "/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE zhiku")
        yield pg.url + "/zhiku"
    finally:
        pg.remove()


def bench_store_ingestion(url: str, work: Path, max_chars: int = 150_000, reps: int = 3,
                          hnsw_from_start: bool = False) -> dict[str, Any]:
    """The same corpus through the whole pipeline (use-m3) into SQLite and into PostgreSQL, interleaved.
    With hnsw_from_start, also into PostgreSQL with the knowledge base's HNSW index made at its creation and
    kept row by row, as the store did before search.ANN_FROM (the baseline of that change)."""
    from zhiku.kb.service import KBService
    from zhiku.kb.stores.postgres import search

    from ._kb_corpus import write_corpus as _write_corpus

    corpus = work / "corpus-stores"
    _write_corpus(corpus, max_chars)
    arms = ["sqlite", "postgresql"] + (["postgresql_hnsw_from_start"] if hnsw_from_start else [])
    runs: dict[str, list[float]] = {arm: [] for arm in arms}
    services = {"sqlite": KBService(Settings(home=work / "home-ing-sqlite", embedder="use-m3", ui=False)),
                "postgresql": KBService(Settings(home=work / "home-ing-pg", embedder="use-m3", ui=False,
                                                 database_url=url))}
    try:
        services["sqlite"].embed(["warm up 预热"])
        for rep in range(reps):
            for arm in arms[rep % len(arms):] + arms[:rep % len(arms)]:  # rotated: drifting load favours no one
                svc, name = services[arm.split("_")[0]], f"ing{rep}x{arms.index(arm)}"
                svc.create(name)
                if arm == "postgresql_hnsw_from_start":
                    kb = svc.store.get_kb(name)
                    with svc.store.pool.connection() as conn:  # type: ignore[attr-defined]
                        conn.execute(search.create_index_sql(kb.id, kb.dim, concurrently=False))
                start = time.perf_counter()
                docs = svc.add_files(name, [corpus])
                seconds = time.perf_counter() - start
                runs[arm].append(sum(d.chunk_count for d in docs) / seconds)
                svc.delete(name)
    finally:
        for svc in services.values():
            svc.close()
    med = {k: round(float(np.median(v)), 2) for k, v in runs.items()}
    return {"embedder": "use-m3", "reps": reps, "median_chunks_per_s": med,
            "runs_chunks_per_s": {k: [round(x, 2) for x in v] for k, v in runs.items()},
            **{f"{arm}_vs_sqlite": round(med[arm] / med["sqlite"], 3) for arm in arms[1:]}}


def bench_postgres(sizes: list[int], work: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    from ._kb_search import bench_search

    out: dict[str, Any] = {}
    with local_postgres() as url:
        import psycopg

        with psycopg.connect(url) as conn:
            out["server"] = conn.execute("SELECT version()").fetchone()[0]  # type: ignore[index]
            out["pgvector"] = conn.execute("SELECT default_version FROM pg_available_extensions"
                                           " WHERE name = 'vector'").fetchone()[0]  # type: ignore[index]
        log("ingestion into SQLite and PostgreSQL (use-m3)...")
        out["ingestion"] = bench_store_ingestion(url, work)
        log(str(out["ingestion"]))
        log(f"PostgreSQL search latency at {sizes}...")
        out["search"] = bench_search(sizes, work / "pg", database_url=url)
    return out


def readme_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    pg = summary.get("postgres")
    if not pg:
        return []
    ing = pg["ingestion"]
    rows = [{"measure": "PostgreSQL store: ingestion chunks/s, use-m3", "value": ing["median_chunks_per_s"]["postgresql"],
             "baseline": f"SQLite {ing['median_chunks_per_s']['sqlite']:.4g} in the same run "
                         f"(ratio {ing['postgresql_vs_sqlite']:.3g}, target >= 0.8)"}]
    for size, res in pg["search"].items():
        sq = summary["search"].get(size, {})
        rows.append({"measure": f"PostgreSQL inserting / indexing s, {int(size):,} synthetic chunks",
                     "value": f"{res['insert_s']:.4g} / {res['index_build_s']:.4g}",
                     "baseline": f"SQLite {sq.get('insert_s', float('nan')):.4g} / "
                                 f"{sq.get('index_build_s', float('nan')):.4g} ({res['dense_method']})"})
        rows.append({"measure": f"PostgreSQL hybrid p50 / p99 ms, {int(size):,} chunks",
                     "value": f"{res['hybrid']['p50_ms']:.3g} / {res['hybrid']['p99_ms']:.3g}",
                     "baseline": f"bm25 {res['bm25']['p50_ms']:.3g}, dense {res['dense']['p50_ms']:.3g}, "
                                 f"recall@10 {res.get('ann_recall_at_10', '-')}; SQLite hybrid "
                                 f"{sq.get('hybrid', {}).get('p50_ms', float('nan')):.3g}"})
    return rows
