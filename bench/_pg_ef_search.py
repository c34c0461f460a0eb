"""pgvector HNSW recall@10 and latency by ef_search at 10k synthetic chunks (python -m bench._pg_ef_search)."""

import json
import time

import numpy as np
from bench import _kb_stores as ks
from bench._kb_search import DIM, Synthetic

from zhiku.kb.store import KBRecord, NewChunk, NewDocument
from zhiku.kb.stores.postgres.store import PostgresStore

syn = Synthetic()
with ks.local_postgres() as url:
    s = PostgresStore(url)
    kb = s.create_kb(KBRecord(0, "k", "", "x", DIM, 500, 100, False, time.time()))
    mats = []
    for d in range(2):
        v = syn.vectors(5000)
        mats.append(v)
        s.put_document(kb, NewDocument(f"d{d}", "0"*64, "s", "ok", None, 0), [NewChunk("w", {}, "1 'w':1") for _ in range(5000)], v)
    m = np.concatenate(mats)
    ids = s.chunk_ids(kb)
    rng = np.random.default_rng(3)
    qs = m[rng.integers(0, len(m), 100)] + 0.5 * rng.standard_normal((100, DIM)).astype(np.float32) / np.sqrt(DIM)
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    from zhiku.kb.stores.postgres import search
    for ef in (100, 200, 400):
        rec: list[float] = []
        t: list[float] = []
        with s._conn() as conn:
            conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(ef),))
            for q in qs:
                t0 = time.perf_counter()
                got = search.dense(conn, kb, q, 10, None)
                t.append(time.perf_counter() - t0)
                truth = set(ids[np.argpartition(-(m @ q), 10)[:10]].tolist())
                rec.append(len(truth & {c for c, _ in got}) / 10)
            conn.execute("SELECT set_config('hnsw.ef_search', '100', false)")
        print(json.dumps({"ef_search": ef, "recall@10": round(float(np.mean(rec)), 4), "p50_ms": round(float(np.median(t)) * 1000, 2)}), flush=True)
