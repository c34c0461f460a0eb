"""BM25 top-k over an FTS5 table, kept fast on big knowledge bases by not letting frequent words pick candidates.

FTS5 answers `ORDER BY rank` by computing bm25() for every row that matches any query word, then sorting:
about 1.3 us a row here, so one word found in 100k chunks costs 130 ms by itself. Two facts allow less work:
- BM25 is a sum over the query's words, and IDF comes from the whole table, so a row's score for words
  A and B together is its score for A plus its score for B whichever query computes them;
- a word found in many chunks has a low IDF, so a chunk holding only frequent words ranks low anyway.

So on a table of PRUNE_FROM rows or more, each query word's chunks are counted, but only up to the point where
the word counts as frequent: in FREQUENT chunks and FREQUENT_SHARE of them. Only rare words pick candidates;
every candidate is then scored with ALL the words (rows that also hold a frequent word come from the query
`(rare) AND (frequent)`, whose bm25 includes both). This is Lucene's "common terms" idea: chunks holding only
frequent words are not candidates. The share is measured, not guessed: applying it to SQuAD's 2,067 dev
paragraphs (2,000 questions), BM25 hit@5 was 0.937 against 0.9365 exact at 5%, but 0.929 at 3% and 0.885 at 1%
(hybrid 0.9405 / 0.9410 at 5%; CMRC: 0.992 / 0.993). A query made only of frequent words ranks at most
ROW_BUDGET of the chunks holding all of them (or, when no chunk holds all, any of them). Smaller tables, and
searches limited to some documents, are ranked exactly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

Scored = list[tuple[int, float]]  # (rowid, BM25 >= 0), best first

PRUNE_FROM = 100_000  # rows; below this FTS5's exact ranking stays within ~15 ms
FREQUENT = 10_000     # a word in at least this many chunks, and
FREQUENT_SHARE = 0.05  # this share of them, does not pick candidates
ROW_BUDGET = 20_000   # rows ranked at most when every query word is frequent


def quote(term: str) -> str:
    """One term as an FTS5 string: no FTS syntax from user input reaches the parser."""
    return '"' + term.replace('"', '""') + '"'


def any_of(terms: Sequence[str]) -> str:
    return " OR ".join(quote(t) for t in terms)


def _ranked(conn: sqlite3.Connection, table: str, match: str, tail: str = "",
            params: Sequence[object] = ()) -> Scored:
    # bm25() rather than the `rank` column: the same numbers, about 20% faster to sort here.
    rows = conn.execute(f"SELECT rowid, bm25({table}) AS s FROM {table} WHERE {table} MATCH ?{tail}", (match, *params))
    return [(int(r), -float(s)) for r, s in rows]


def _best(scores: dict[int, float], k: int) -> Scored:
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def exact(conn: sqlite3.Connection, table: str, terms: Sequence[str], k: int,
          doc_filter: tuple[str, Sequence[object]] | None = None) -> Scored:
    """FTS5's own ranking of every row holding any of `terms`; `doc_filter` is (SQL on rowid, params)."""
    tail, params = "", []
    if doc_filter is not None:
        tail, params = f" AND {doc_filter[0]}", list(doc_filter[1])
    return _ranked(conn, table, any_of(terms), f"{tail} ORDER BY s LIMIT ?", [*params, k])


def count_upto(conn: sqlite3.Connection, table: str, term: str, cap: int) -> int:
    """Chunks holding `term`, counted no further than `cap` (rowids only: no ranking, ~35 ns a row)."""
    row = conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {table} MATCH ? LIMIT ?)",
                       (quote(term), cap)).fetchone()
    return int(row[0])


def top_k(conn: sqlite3.Connection, table: str, terms: Sequence[str], k: int, rows: int) -> Scored:
    """The k best rows by BM25 over all `terms` (see the module note for when frequent words are pruned)."""
    if not terms or k < 1:
        return []
    if rows < PRUNE_FROM:
        return exact(conn, table, terms, k)
    frequent_from = max(FREQUENT, int(rows * FREQUENT_SHARE))
    rare = [t for t in terms if count_upto(conn, table, t, frequent_from) < frequent_from]
    frequent = [t for t in terms if t not in rare]
    if not frequent:
        return exact(conn, table, terms, k)
    if rare:
        # The k best by rare words alone, and the k best of the rows that also hold a frequent word (scored
        # with every word): together they hold the k best rows that have a rare word, by full score.
        top = " ORDER BY s LIMIT ?"
        scores = dict(_ranked(conn, table, any_of(rare), top, [k]))
        scores.update(_ranked(conn, table, f"({any_of(rare)}) AND ({any_of(frequent)})", top, [k]))
        return _best(scores, k)
    scores = dict(_ranked(conn, table, " AND ".join(quote(t) for t in frequent), " LIMIT ?", [ROW_BUDGET]))
    if not scores:
        scores = dict(_ranked(conn, table, any_of(frequent), " LIMIT ?", [ROW_BUDGET]))
    return _best(scores, k)
