"""The database `database_url` names: SQLite under ZHIKU_HOME (default) or PostgreSQL + pgvector.

Each feature keeps its own schema next to its code (kb/stores/*/schema.py, chat/schema.py); this module
opens connections with what every caller needs and applies those schemas once: SQLite with WAL and
pragmas, PostgreSQL through a connection pool, with a schema version and forward migrations applied
under an advisory lock (several processes may start at once), and start-up errors that name their fix.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from zhiku.errors import ErrorKind, ZhikuError

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from zhiku.config import Settings

_applied: set[Path] = set()
_lock = threading.Lock()


class DatabaseError(ZhikuError):
    """The database failed an operation; the message is shown as is."""

    kind: ErrorKind = "busy"
    code = "database_error"


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached right now: 503 with Retry-After; the next request tries again."""

    code = "database_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=5)


class DatabaseConfigError(DatabaseError):
    """database_url, the credentials or the server set-up are wrong: one line that names the fix."""

    code = "database_misconfigured"


def _schemas() -> list[str]:
    from zhiku.chat.schema import SCHEMA as CHAT
    from zhiku.kb.stores.sqlite.schema import SCHEMA as KB

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
        if conn.in_transaction:  # SQLite has already rolled back after some errors (a full disk)
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# ---- PostgreSQL ------------------------------------------------------------------------------------

_pools: dict[str, ConnectionPool] = {}
_pools_lock = threading.Lock()


def _migrations() -> list[str]:
    """Forward migrations; the schema version is the number applied. Never edit one that has shipped."""
    from zhiku.chat.schema import PG_SCHEMA as CHAT
    from zhiku.kb.stores.postgres.schema import SCHEMA as KB

    return [KB + CHAT]


def _config_error(e: Exception, url: str) -> DatabaseConfigError:
    from zhiku.config import mask_url

    where = mask_url(url)
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    msg = " ".join(first.rsplit("failed: ", 1)[-1].split())  # the server's own words, without libpq's preamble
    low = str(e).lower()
    if "password authentication failed" in low or "no password supplied" in low:
        hint = f"wrong user or password in database_url ({where}): fix the URL or the server's role"
    elif "does not exist" in low and "database" in low:
        hint = f"the database in database_url ({where}) does not exist: create it (createdb NAME) or fix the URL"
    elif "invalid dsn" in low or "invalid connection option" in low or "invalid integer value" in low:
        hint = f"database_url ({where}) is not a valid postgresql://user:password@host:port/database URL"
    elif "extension" in low and "vector" in low and "permission denied" in low:
        hint = (f"pgvector is not enabled in the database of {where} and this user may not enable it: run "
                "CREATE EXTENSION vector; in that database as a superuser (pgvector >= 0.5 on the server)")
    elif "extension" in low and "vector" in low:
        hint = ("the pgvector extension is missing on the server: install pgvector >= 0.5 there, then run "
                "CREATE EXTENSION vector; in the database as a superuser")
    else:
        hint = f"cannot reach PostgreSQL at {where}: start the server or fix database_url"
    return DatabaseConfigError(f"{hint} ({msg})")


def unavailable(e: Exception) -> DatabaseUnavailable:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return DatabaseUnavailable(f"the database is unavailable, try again shortly ({first})")


def _configure(conn: Any) -> None:
    from pgvector.psycopg import register_vector

    from zhiku.kb.stores.postgres.search import EF_SEARCH

    register_vector(conn)
    conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(EF_SEARCH),))
    # JIT compiling a BM25 statement over a big base (cost past jit_above_cost) takes longer than running it.
    conn.execute("SELECT set_config('jit', 'off', false)")


def postgres_pool(url: str) -> ConnectionPool:
    """The process's pool for `url` (shared by the KB store and the history), schema brought up to date.
    Raises DatabaseConfigError, one line naming the fix, when the server cannot be used."""
    import psycopg
    from psycopg_pool import ConnectionPool

    with _pools_lock:
        pool = _pools.get(url)
        if pool is not None and not pool.closed:
            return pool
        try:
            with psycopg.connect(url, connect_timeout=10, autocommit=True) as conn:
                _migrate(conn)
        except psycopg.Error as e:
            raise _config_error(e, url) from None
        # A short reconnect_timeout: while the server is down the pool gives up on a slot quickly, and the
        # next request tries a fresh connection at once instead of waiting out a long back-off.
        pool = ConnectionPool(url, min_size=1, max_size=8, kwargs={"autocommit": True, "connect_timeout": 5},
                              configure=_configure, check=ConnectionPool.check_connection, timeout=5,
                              reconnect_timeout=2, open=True, name="zhiku")
        _pools[url] = pool
        return pool


def close_pools() -> None:
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


def _migrate(conn: Any) -> None:
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7265636)")  # one migrating process at a time
        conn.execute("CREATE TABLE IF NOT EXISTS zhiku_schema (version integer NOT NULL)")
        row = conn.execute("SELECT max(version) FROM zhiku_schema").fetchone()
        version = int(row[0] or 0)
        steps = _migrations()
        if version > len(steps):
            raise DatabaseConfigError(f"the database holds zhiku schema version {version}, newer than this "
                                      f"zhiku knows ({len(steps)}): upgrade zhiku")
        for number, sql in enumerate(steps[version:], start=version + 1):
            conn.execute(sql)
            conn.execute("INSERT INTO zhiku_schema (version) VALUES (%s)", (number,))


def check_database(settings: Settings) -> None:
    """Open the configured database once at start-up; raises DatabaseConfigError naming the fix."""
    if settings.uses_postgres:
        postgres_pool(settings.database_url)


def schema_version(url: str) -> int:
    pool = postgres_pool(url)
    with pool.connection() as conn:
        row = conn.execute("SELECT max(version) FROM zhiku_schema").fetchone()
    return int(row[0] or 0) if row else 0


# ---- a small SQL seam for simple tables (the history): `?` placeholders, rows as dicts ----------------

class Sql(Protocol):
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...
    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None: ...
    def run(self, sql: str, params: Sequence[Any] = ()) -> int: ...


class Database(Protocol):
    def read(self) -> AbstractContextManager[Sql]: ...
    def transaction(self) -> AbstractContextManager[Sql]: ...
    def close(self) -> None: ...


class _SqliteSql:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute(sql, tuple(params)).fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        row = self.conn.execute(sql, tuple(params)).fetchone()
        return dict(row) if row is not None else None

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self.conn.execute(sql, tuple(params)).rowcount)


class SqliteDatabase:
    """One connection guarded by a lock: the calls are short."""

    def __init__(self, path: Path) -> None:
        self._conn = connect(path)
        self._lock = threading.Lock()

    @contextmanager
    def read(self) -> Iterator[Sql]:
        with self._lock:
            yield _SqliteSql(self._conn)

    @contextmanager
    def transaction(self) -> Iterator[Sql]:
        with self._lock, transaction(self._conn) as c:
            yield _SqliteSql(c)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _PgSql:
    def __init__(self, cur: Any) -> None:
        self.cur = cur

    def _exec(self, sql: str, params: Sequence[Any]) -> Any:
        return self.cur.execute(sql.replace("?", "%s"), tuple(params))

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return list(self._exec(sql, params).fetchall())

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        row = self._exec(sql, params).fetchone()
        return dict(row) if row is not None else None

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self._exec(sql, params).rowcount)


class PostgresDatabase:
    """The process's pool; our SQL's `?` placeholders become `%s` (none of it holds a literal ? or %)."""

    def __init__(self, url: str) -> None:
        self.pool = postgres_pool(url)

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        import psycopg
        from psycopg.rows import dict_row
        from psycopg_pool import PoolTimeout

        try:
            with self.pool.connection() as conn:
                yield conn, conn.cursor(row_factory=dict_row)
        except (psycopg.OperationalError, PoolTimeout) as e:
            raise unavailable(e) from e

    @contextmanager
    def read(self) -> Iterator[Sql]:
        with self._conn() as (_conn, cur):
            yield _PgSql(cur)

    @contextmanager
    def transaction(self) -> Iterator[Sql]:
        with self._conn() as (conn, cur), conn.transaction():
            yield _PgSql(cur)

    def close(self) -> None:
        """The pool is shared by the process and closed by close_pools()."""


def open_database(settings: Settings) -> Database:
    if settings.uses_postgres:
        return PostgresDatabase(settings.database_url)
    return SqliteDatabase(settings.db_path)
