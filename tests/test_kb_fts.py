"""BM25 top-k on a real SQLite FTS5 table: the frequent-word pruning against FTS5's own exact ranking.

The thresholds are lowered (monkeypatched) so that a table of a few thousand rows takes the pruned path
that a knowledge base of a million chunks takes.
"""

from __future__ import annotations

import random
import sqlite3

import pytest

from zhiku.kb.stores.sqlite import fts

TABLE = "chunk_fts_1"


@pytest.fixture
def conn() -> sqlite3.Connection:
    """3,000 rows of Zipf-like words (w0, w1 frequent; w40 on rarer); 'needle' only in rowids 8 and 2501."""
    rng = random.Random(5)
    c = sqlite3.connect(":memory:")
    c.execute(f"CREATE VIRTUAL TABLE {TABLE} USING fts5(tokens, tokenize='porter unicode61 remove_diacritics 2')")
    rows = []
    for i in range(3_000):
        words = [f"w{int(rng.paretovariate(0.6)) - 1}" for _ in range(30)]
        if i in (7, 2500):
            words += ["needle", "needle"]
        rows.append((i + 1, " ".join(words)))
    c.executemany(f"INSERT INTO {TABLE} (rowid, tokens) VALUES (?, ?)", rows)
    return c


@pytest.fixture
def pruned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fts, "PRUNE_FROM", 1_000)
    monkeypatch.setattr(fts, "FREQUENT", 300)
    monkeypatch.setattr(fts, "FREQUENT_SHARE", 0.05)  # 150 of 3,000: FREQUENT decides
    monkeypatch.setattr(fts, "ROW_BUDGET", 400)


def df(conn: sqlite3.Connection, term: str) -> int:
    return fts.count_upto(conn, TABLE, term, 10**9)


def test_rare_words_pick_candidates_scored_with_every_word(conn: sqlite3.Connection, pruned: None) -> None:
    terms = ["needle", "w0", "w1"]
    assert df(conn, "needle") == 2 and df(conn, "w0") >= fts.FREQUENT and df(conn, "w1") >= fts.FREQUENT
    got = fts.top_k(conn, TABLE, terms, 10, 3_000)
    exact = dict(fts.exact(conn, TABLE, terms, 3_000))
    # Only chunks holding the rare word are candidates, and each gets its exact score over all three words.
    assert [r for r, _ in got] == sorted((8, 2501), key=lambda r: -exact[r])
    for row, score in got:
        assert score == pytest.approx(exact[row], rel=1e-9)
        assert score > dict(fts.exact(conn, TABLE, ["needle"], 10))[row]  # the frequent words added to it


def test_pruned_top_k_matches_exact_ranking_when_rare_words_decide(conn: sqlite3.Connection, pruned: None) -> None:
    rare = [w for w in (f"w{i}" for i in range(40, 400)) if 3 <= df(conn, w) < fts.FREQUENT][:20]
    assert len(rare) >= 10
    agree = 0
    for word in rare:
        terms = [word, "w0"]
        got = fts.top_k(conn, TABLE, terms, 3, 3_000)
        want = fts.exact(conn, TABLE, terms, 3)
        agree += [r for r, _ in got] == [r for r, _ in want]
    assert agree >= 0.8 * len(rare)


def test_only_frequent_words_rank_a_bounded_set_holding_all_of_them(conn: sqlite3.Connection, pruned: None,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    got = fts.top_k(conn, TABLE, ["w0", "w1"], 5, 3_000)
    assert len(got) == 5
    both = {r for (r,) in conn.execute(f"SELECT rowid FROM {TABLE} WHERE {TABLE} MATCH 'w0 AND w1'")}
    assert {r for r, _ in got} <= both
    # No row holds every word: any of them will do, still within the budget.
    got = fts.top_k(conn, TABLE, ["w0", "nowhere"], 5, 3_000)
    monkeypatch.setattr(fts, "FREQUENT", 1)  # now 'nowhere' (no rows) is rare: the rare path gives nothing
    assert fts.top_k(conn, TABLE, ["w0", "nowhere"], 5, 3_000) == []


def test_small_tables_and_hostile_terms(conn: sqlite3.Connection) -> None:
    assert fts.top_k(conn, TABLE, ["needle"], 5, 3_000) == fts.exact(conn, TABLE, ["needle"], 5)
    assert fts.top_k(conn, TABLE, [], 5, 3_000) == []
    for term in ('"', 'a" OR "b', "NEAR(", "*", "w0)"):
        fts.top_k(conn, TABLE, [term], 5, 3_000)  # quoted: never FTS syntax, never an error
