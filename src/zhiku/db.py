"""The SQLite database under ZHIKU_HOME: the single source of truth.

Each feature keeps its own schema next to its code (kb/schema.py, chat/schema.py); this module only
opens connections with the pragmas every caller needs and applies those schemas once.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_applied: set[Path] = set()
_lock = threading.Lock()


def _schemas() -> list[str]:
    from zhiku.chat.schema import SCHEMA as CHAT
    from zhiku.kb.schema import SCHEMA as KB

    return [KB, CHAT]


def connect(path: Path) -> sqlite3.Connection:
    """A new connection (one per thread): WAL, foreign keys on, waits instead of failing when busy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    resolved = path.resolve()
    with _lock:
        if resolved not in _applied:
            for schema in _schemas():
                conn.executescript(schema)
            _applied.add(resolved)
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error: all or nothing."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
