"""Full-text lexemes for PostgreSQL, made in Python so that the server needs no text-search configuration.

The same tokens as the SQLite store's FTS5 (porter unicode61 remove_diacritics): CJK runs cut by jieba
(kb/segment.py), then words of letters and digits, lower-cased, diacritics removed, English words
Porter-stemmed. They are handed to the server as `tsvector` / `tsquery` literals, quoted here, so no
user text ever reaches a text-search parser.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

from zhiku.kb import segment

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
MAX_LEXEME = 200  # characters; PostgreSQL refuses lexemes over 2 KB, and no real word is this long
MAX_POSITION = 16_383  # tsvector positions stop here


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    if not word.isascii():
        word = "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))
        if not word.isascii():
            return word
    return str(_stemmer().stemWord(word)) or word  # "s" would stem to nothing


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    import snowballstemmer

    return snowballstemmer.stemmer("porter")


def tokens(text: str) -> list[str]:
    """Lexemes of `text` in order (CJK already cut into words by the caller or here)."""
    return [_stem(w) for w in _TOKEN.findall(text.lower()) if len(w) <= MAX_LEXEME]


def quote(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def index_form(text: str) -> str:
    """'<token count> <tsvector literal>': what put_document stores for a chunk (CPU work, done early)."""
    toks = tokens(segment.for_index(text))
    positions: dict[str, list[int]] = {}
    for i, tok in enumerate(toks, start=1):
        positions.setdefault(tok, []).append(min(i, MAX_POSITION))
    literal = " ".join(f"{quote(t)}:{','.join(map(str, sorted(set(p))[:256]))}" for t, p in positions.items())
    return f"{len(toks)} {literal}"


def split_index_form(form: str) -> tuple[int, str]:
    count, _, literal = form.partition(" ")
    return int(count), literal


def query_lexemes(query: str) -> list[str]:
    """Distinct lexemes of a query (stop words dropped as for FTS5, unless nothing else is left)."""
    out: list[str] = []
    for term in segment.query_terms(query):
        for lex in tokens(term):
            if lex not in out:
                out.append(lex)
    return out


def any_of(lexemes: list[str]) -> str:
    return " | ".join(quote(x) for x in lexemes)


def all_of(lexemes: list[str]) -> str:
    return " & ".join(quote(x) for x in lexemes)
