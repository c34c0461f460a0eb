"""BM25 and dense search in SQL for the PostgreSQL store. Scores in [0, 1], as the SQLite store's.

BM25 is FTS5's formula (k1=1.2, b=0.75, IDF log((N - df + 0.5) / (df + 0.5)), floored at 1e-6), computed
from the tsvector's positions (term frequency), the chunk's length and the per-knowledge-base statistics
kept by every write, so that the two stores rank alike. Candidates come from the GIN index; as in the
SQLite store, on big bases a frequent word (in FREQUENT chunks and FREQUENT_SHARE of them) does not pick
candidates by itself but still adds to the score of every candidate (the measured rule of sqlite/fts.py).

Dense search is exact (a scan of the knowledge base's vectors) until the base holds ANN_FROM chunks; from
then on it walks the base's own partial HNSW index (`embedding::vector(dim)`, cosine) with ef_search =
max(EF_SEARCH, k). The index is built once, by `ensure_index` (store.prepare, after an ingestion), not kept
row by row from the first chunk: maintaining HNSW per inserted row was most of the ingestion cost, and
small bases do not need it. Whether the index is there (and valid) picks the statement: the index-shaped one
(ORDER BY the cast distance) or the plain scan. A search limited to some documents is exact over their chunks.
BM25 and dense can run at once on two connections (PostgresStore.concurrent_searches).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from zhiku.embed.base import Vectors
from zhiku.kb.store import KBRecord, Scored, bm25_relevance
from zhiku.kb.stores.postgres import text
from zhiku.kb.types import Progress

K1, B = 1.2, 0.75
PRUNE_FROM = 100_000
FREQUENT = 10_000
FREQUENT_SHARE = 0.05
ROW_BUDGET = 20_000
MAXSCORE_ROWS = 4  # the rarest words are ranked first while they hold under this many rows per result
# pgvector's HNSW (m 16, ef_construction 64) on bench/kb.py's synthetic 384-d vectors, 10k chunks, 100 queries:
# recall@10 0.907 at ef_search 100 (p50 3.7 ms), 0.959 at 200 (8.0 ms), 0.994 at 400 (10.3 ms), loaded 2-core VM.
EF_SEARCH = 200


# Chunks in a knowledge base from which its HNSW index is built (ensure_index). Measured on bench/kb.py's
# 384-d vectors (k 50, loaded 2-core VM): exact scan p50 7 ms at 10k chunks, 15-85 ms at 20k, 115 ms at 50k;
# HNSW 6.5 ms at 10k, 8 ms at 20k, 10 ms at 50k. Building it: 0.6-0.9 ms a vector (5.7 s at 10k, 94 s at
# 100k), against about 7 ms a vector kept row by row as chunks are inserted.
ANN_FROM = 10_000
BULK_MIN, BULK_SHARE = 1_000, 0.15  # see before_bulk_insert
INDEX_LOCK = 7265637  # advisory lock class (with the knowledge base's id): one process builds an index
BUILD_MEMORY = "1GB"  # maintenance_work_mem for the build: the graph of ~500k 384-d vectors fits in memory


def index_name(kb_id: int) -> str:
    return f"chunk_hnsw_{int(kb_id)}"


def create_index_sql(kb_id: int, dim: int, concurrently: bool) -> str:
    # Integers from our own table, never user text: safe in the statement.
    how = "CONCURRENTLY " if concurrently else ""
    return (f"CREATE INDEX {how}IF NOT EXISTS {index_name(kb_id)} ON chunk USING hnsw "
            f"((embedding::vector({int(dim)})) vector_cosine_ops) WHERE kb_id = {int(kb_id)}")


def drop_index(conn: Any, kb_id: int) -> None:
    """Outside a transaction: CONCURRENTLY takes no lock that stops other knowledge bases' reads and writes
    (a plain DROP INDEX would lock the whole chunk table, and wait behind any index build in progress)."""
    conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {index_name(kb_id)}")


def _index_state(conn: Any, kb_id: int) -> tuple[int, int, bool | None]:
    """(chunks, dim, index valid?) of a knowledge base; None when it has no index."""
    row = conn.execute("SELECT k.chunks, k.dim, (SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid ="
                       " to_regclass(%s)) FROM knowledge_base k WHERE k.id = %s", (index_name(kb_id), kb_id)).fetchone()
    return (0, 0, None) if row is None else (int(row[0]), int(row[1]), row[2])


def tidy_text_index(conn: Any) -> None:
    """Merge the GIN index's pending list (where fastupdate puts new rows cheaply) into the index: until then
    the planner prices the GIN index high and BM25 falls back to a scan of every chunk (15-20 ms at 10k
    chunks instead of 2 ms). Autovacuum would do it too, a minute or more later."""
    import psycopg

    try:
        conn.execute("SELECT gin_clean_pending_list('chunk_tsv'::regclass)")
    except psycopg.errors.InsufficientPrivilege:  # tables owned by another role: autovacuum will do it
        pass


def ensure_index(conn: Any, kb: KBRecord, progress: Progress | None = None) -> bool:
    """Build the knowledge base's HNSW index if it holds ANN_FROM chunks and has none; True if built here.

    CREATE INDEX CONCURRENTLY (on an autocommit connection): writers from every process go on meanwhile,
    and searches stay exact until the index is valid. A session advisory lock makes one process the builder;
    the others return at once. An invalid index left by a builder that died is dropped and built again.
    """
    chunks, dim, valid = _index_state(conn, kb.id)
    if chunks < ANN_FROM or valid:
        return False
    if not conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (INDEX_LOCK, kb.id)).fetchone()[0]:
        return False  # another process is building it
    try:
        chunks, dim, valid = _index_state(conn, kb.id)  # it may have finished before we took the lock
        if chunks < ANN_FROM or valid:
            return False
        if valid is False:
            drop_index(conn, kb.id)
        conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", (BUILD_MEMORY,))
        if progress is not None:
            progress("index", 0, chunks)
        conn.execute(create_index_sql(kb.id, dim, concurrently=True))
        conn.execute("ANALYZE chunk")  # row estimates for the planner to choose the index over a scan
        if progress is not None:
            progress("index", chunks, chunks)
        return True
    finally:
        conn.execute("RESET maintenance_work_mem")
        conn.execute("SELECT pg_advisory_unlock(%s, %s)", (INDEX_LOCK, kb.id))


def bm25(conn: Any, kb: KBRecord, query: str, k: int, doc_ids: Sequence[int] | None) -> Scored:
    lexemes = text.query_lexemes(query)
    if not lexemes or k < 1:
        return []
    rows = conn.execute("SELECT k.chunks, k.tokens, t.lexeme, t.df FROM knowledge_base k LEFT JOIN term_stats t"
                        " ON t.kb_id = k.id AND t.lexeme = ANY(%s) WHERE k.id = %s", (lexemes, kb.id)).fetchall()
    if not rows or not rows[0][0]:
        return []
    n, avgdl = int(rows[0][0]), max(1.0, int(rows[0][1]) / int(rows[0][0]))
    dfs = {r[2]: int(r[3]) for r in rows if r[2] is not None and r[3]}
    present = [x for x in lexemes if dfs.get(x, 0) > 0]
    if not present:
        return []
    idf = {x: max(1e-6, math.log((n - dfs[x] + 0.5) / (dfs[x] + 0.5))) for x in present}
    score = _Scoring(conn, kb, present, idf, avgdl, k)
    if doc_ids is not None:
        return _scaled(score.where("c.kb_id = %s AND c.tsv @@ %s::tsquery AND c.document_id = ANY(%s)",
                                   [kb.id, text.any_of(present), list(doc_ids)]))
    pickers = present
    if n >= PRUNE_FROM:
        frequent_from = max(FREQUENT, int(n * FREQUENT_SHARE))
        pickers = [x for x in present if dfs[x] < frequent_from]
        if not pickers:  # only frequent words: rank at most ROW_BUDGET chunks, those holding all of them if any
            both = text.all_of(present)
            hit = conn.execute("SELECT 1 FROM chunk WHERE kb_id = %s AND tsv @@ %s::tsquery LIMIT 1",
                               (kb.id, both)).fetchone()
            return _scaled(score.where("c.id IN (SELECT id FROM chunk WHERE kb_id = %s AND tsv @@ %s::tsquery"
                                       " LIMIT %s)", [kb.id, both if hit else text.any_of(present), ROW_BUDGET]))
    # MaxScore (exact): a chunk holding none of the rarest words scores less than the most the other words can
    # add, sum(idf * (K1 + 1)). Rank the chunks of the rarest words (enough of them for k); if the k-th
    # beats that bound, no other chunk can enter the top k. Otherwise rank every chunk of every picker.
    by_df = sorted(pickers, key=lambda x: dfs[x])
    rarest: list[str] = []
    while len(rarest) < len(by_df) and sum(dfs[x] for x in rarest) < MAXSCORE_ROWS * k:
        rarest.append(by_df[len(rarest)])
    rest_bound = sum(idf[x] * (K1 + 1) for x in by_df[len(rarest):])
    if len(rarest) < len(by_df) and rest_bound > 0:
        top = score.where("c.kb_id = %s AND c.tsv @@ %s::tsquery", [kb.id, text.any_of(rarest)])
        if len(top) == k and top[-1][1] > rest_bound:
            return _scaled(top)
    return _scaled(score.where("c.kb_id = %s AND c.tsv @@ %s::tsquery", [kb.id, text.any_of(by_df)]))


def _scaled(rows: list[tuple[int, float]]) -> Scored:
    return [(cid, bm25_relevance(s)) for cid, s in rows if s > 0]


class _Scoring:
    """BM25 (raw scores) of the query's words over the chunks a WHERE clause picks, top k."""

    def __init__(self, conn: Any, kb: KBRecord, present: list[str], idf: dict[str, float], avgdl: float,
                 k: int) -> None:
        self.conn, self.present, self.idf, self.avgdl, self.k = conn, present, idf, avgdl, k

    def where(self, where: str, params: list[Any]) -> list[tuple[int, float]]:
        # Only the query's lexemes are unnested: setweight marks them, ts_filter keeps them (both in C).
        sql = (f"WITH q(lexeme, idf) AS (SELECT * FROM unnest(%s::text[], %s::float8[])) "
               f"SELECT c.id, sum(q.idf * cardinality(u.positions) * {K1 + 1} / (cardinality(u.positions) + "
               f"{K1} * ({1 - B} + {B} * c.ntok / %s::float8))) AS s "
               f"FROM chunk c CROSS JOIN LATERAL unnest(ts_filter(setweight(c.tsv, 'A', %s::text[]), '{{a}}')) u "
               f"JOIN q ON q.lexeme = u.lexeme WHERE {where} GROUP BY c.id ORDER BY s DESC, c.id LIMIT %s")
        rows = self.conn.execute(sql, (self.present, [self.idf[x] for x in self.present], self.avgdl,
                                       self.present, *params, self.k)).fetchall()
        return [(int(cid), float(s)) for cid, s in rows]


def has_index(conn: Any, kb_id: int) -> bool:
    """Whether the knowledge base's HNSW index exists and is valid."""
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass(%s) AND indisvalid)",
                       (index_name(kb_id),)).fetchone()
    return bool(row[0])


def before_bulk_insert(conn: Any, kb: KBRecord, rows: int) -> None:
    """Drop the index before inserting a document that is big against its knowledge base (BULK_SHARE of it,
    at least BULK_MIN chunks): building the index again after it (prepare) is cheaper than keeping it row
    by row, about 0.8 ms against 7 ms a vector. Searches are exact meanwhile."""
    if rows < BULK_MIN:
        return
    chunks, _dim, valid = _index_state(conn, kb.id)
    if valid is not None and rows >= BULK_SHARE * chunks:
        drop_index(conn, kb.id)


def dense(conn: Any, kb: KBRecord, query: Vectors, k: int, doc_ids: Sequence[int] | None,
          indexed: set[tuple[int, int]]) -> Scored:
    """Cosine similarity; the distance is computed once per row and turned into a score here.

    `indexed` remembers the (knowledge base, vector epoch) pairs seen with a valid index, sparing the check:
    a rebuild, which drops the index, starts a new epoch, and an index dropped otherwise (a big upload, see
    before_bulk_insert) merely makes the index-shaped statement an exact scan until prepare builds it again.
    """
    q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
    if k < 1:
        return []
    dim, kb_id = int(kb.dim), int(kb.id)
    seen = (kb_id, int(kb.vector_epoch))
    if doc_ids is None and (seen in indexed or has_index(conn, kb_id)):
        indexed.add(seen)
        sql = (f"SELECT id, embedding::vector({dim}) <=> %s::vector({dim}) AS d FROM chunk WHERE kb_id = {kb_id}"
               " AND embedding IS NOT NULL ORDER BY d LIMIT %s")
        if k <= EF_SEARCH:  # every pooled connection is set to EF_SEARCH (zhiku.db)
            rows = conn.execute(sql, (q, k)).fetchall()
        else:
            with conn.transaction():
                conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(min(1000, k)),))
                rows = conn.execute(sql, (q, k)).fetchall()
    else:  # exact
        where, params = ("kb_id = %s", [kb_id]) if doc_ids is None else ("kb_id = %s AND document_id = ANY(%s)",
                                                                          [kb_id, list(doc_ids)])
        where += " AND embedding IS NOT NULL"  # chunks still waiting for their vector
        rows = conn.execute(f"SELECT id, embedding <=> %s AS d FROM chunk WHERE {where} ORDER BY d, id LIMIT %s",
                            (q, *params, k)).fetchall()
    return [(int(cid), min(1.0, max(0.0, 1.0 - float(d)))) for cid, d in rows]
