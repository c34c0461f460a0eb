"""BM25 and dense search in SQL for the PostgreSQL store. Scores in [0, 1], as the SQLite store's.

BM25 is FTS5's formula (k1=1.2, b=0.75, IDF log((N - df + 0.5) / (df + 0.5)), floored at 1e-6), computed
from the tsvector's positions (term frequency), the chunk's length and the per-knowledge-base statistics
kept by every write, so that the two stores rank alike. Candidates come from the GIN index; as in the
SQLite store, on big bases a frequent word (in FREQUENT chunks and FREQUENT_SHARE of them) does not pick
candidates by itself but still adds to the score of every candidate (the measured rule of sqlite/fts.py).

Dense search walks the knowledge base's own partial HNSW index (`embedding::vector(dim)`, cosine) with
ef_search = max(EF_SEARCH, k); a search limited to some documents is exact over their chunks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from zhiku.embed.base import Vectors
from zhiku.kb.store import KBRecord, Scored
from zhiku.kb.stores.postgres import text

K1, B = 1.2, 0.75
BM25_HALF = 10.0  # as the SQLite store: s / (s + BM25_HALF) maps a BM25 score to [0, 1]
PRUNE_FROM = 100_000
FREQUENT = 10_000
FREQUENT_SHARE = 0.05
ROW_BUDGET = 20_000
# pgvector's HNSW (m 16, ef_construction 64) on bench/kb.py's synthetic 384-d vectors, 10k chunks, 100 queries:
# recall@10 0.907 at ef_search 100 (p50 3.7 ms), 0.959 at 200 (8.0 ms), 0.994 at 400 (10.3 ms), loaded 2-core VM.
EF_SEARCH = 200


def index_name(kb: KBRecord) -> str:
    return f"chunk_hnsw_{int(kb.id)}"


def create_index_sql(kb: KBRecord) -> str:
    # Integers from our own table, never user text: safe in the statement.
    return (f"CREATE INDEX IF NOT EXISTS {index_name(kb)} ON chunk USING hnsw "
            f"((embedding::vector({int(kb.dim)})) vector_cosine_ops) WHERE kb_id = {int(kb.id)}")


def bm25(conn: Any, kb: KBRecord, query: str, k: int, doc_ids: Sequence[int] | None) -> Scored:
    lexemes = text.query_lexemes(query)
    if not lexemes or k < 1:
        return []
    row = conn.execute("SELECT chunks, tokens FROM knowledge_base WHERE id = %s", (kb.id,)).fetchone()
    if row is None or not row[0]:
        return []
    n, avgdl = int(row[0]), max(1.0, int(row[1]) / int(row[0]))
    dfs = dict(conn.execute("SELECT lexeme, df FROM term_stats WHERE kb_id = %s AND lexeme = ANY(%s)",
                            (kb.id, lexemes)).fetchall())
    present = [x for x in lexemes if dfs.get(x, 0) > 0]
    if not present:
        return []
    idf = [max(1e-6, math.log((n - dfs[x] + 0.5) / (dfs[x] + 0.5))) for x in present]
    where, params = "c.kb_id = %s AND c.tsv @@ %s::tsquery", [kb.id, text.any_of(present)]
    if doc_ids is not None:
        where += " AND c.document_id = ANY(%s)"
        params.append(list(doc_ids))
    elif n >= PRUNE_FROM:
        frequent_from = max(FREQUENT, int(n * FREQUENT_SHARE))
        rare = [x for x in present if dfs[x] < frequent_from]
        if rare:
            params[1] = text.any_of(rare)
        else:  # only frequent words: rank at most ROW_BUDGET chunks, those holding all of them if any
            both = text.all_of(present)
            hit = conn.execute("SELECT 1 FROM chunk WHERE kb_id = %s AND tsv @@ %s::tsquery LIMIT 1",
                               (kb.id, both)).fetchone()
            where = ("c.id IN (SELECT id FROM chunk WHERE kb_id = %s AND tsv @@ %s::tsquery LIMIT %s)")
            params = [kb.id, both if hit else text.any_of(present), ROW_BUDGET]
    # Only the query's lexemes are unnested: setweight marks them, ts_filter keeps them (both in C).
    sql = (f"WITH q(lexeme, idf) AS (SELECT * FROM unnest(%s::text[], %s::float8[])) "
           f"SELECT c.id, sum(q.idf * cardinality(u.positions) * {K1 + 1} / (cardinality(u.positions) + "
           f"{K1} * ({1 - B} + {B} * c.ntok / %s::float8))) AS s "
           f"FROM chunk c CROSS JOIN LATERAL unnest(ts_filter(setweight(c.tsv, 'A', %s::text[]), '{{a}}')) u "
           f"JOIN q ON q.lexeme = u.lexeme WHERE {where} GROUP BY c.id ORDER BY s DESC, c.id LIMIT %s")
    rows = conn.execute(sql, (present, idf, avgdl, present, *params, k)).fetchall()
    return [(int(cid), float(s) / (float(s) + BM25_HALF)) for cid, s in rows if s > 0]


def dense(conn: Any, kb: KBRecord, query: Vectors, k: int, doc_ids: Sequence[int] | None) -> Scored:
    q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
    if k < 1:
        return []
    if doc_ids is not None:  # no cast: the HNSW index cannot serve it, so this is exact
        rows = conn.execute("SELECT id, 1 - (embedding <=> %s) FROM chunk WHERE kb_id = %s AND document_id"
                            " = ANY(%s) ORDER BY embedding <=> %s, id LIMIT %s",
                            (q, kb.id, list(doc_ids), q, k)).fetchall()
    else:
        dim, kb_id = int(kb.dim), int(kb.id)
        sql = (f"SELECT id, 1 - (embedding::vector({dim}) <=> %s::vector({dim})) FROM chunk WHERE kb_id = {kb_id}"
               f" ORDER BY embedding::vector({dim}) <=> %s::vector({dim}) LIMIT %s")
        if k <= EF_SEARCH:  # every pooled connection is set to EF_SEARCH (zhiku.db): one round trip
            rows = conn.execute(sql, (q, q, k)).fetchall()
        else:
            with conn.transaction():
                conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(min(1000, k)),))
                rows = conn.execute(sql, (q, q, k)).fetchall()
    return [(int(cid), min(1.0, max(0.0, float(s)))) for cid, s in rows]
