"""The database `database_url` names: SQLite under ZHIKU_HOME (default) or PostgreSQL + pgvector.

It knows no feature: each owner (the knowledge-base stores, the history) keeps its schema next to its code
and hands it in as a Schema when it opens the database. This module opens connections with what every
caller needs and applies each owner's schema once: SQLite with WAL and pragmas, PostgreSQL through one
connection pool per URL, each owner's forward migrations numbered on their own and applied under an
advisory lock (several processes may start at once), and start-up errors that name their fix.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from zhiku.errors import ErrorKind, ZhikuError

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from zhiku.config import Settings

_applied: set[tuple[Path, str]] = set()  # (SQLite file, owner) whose schema is in place
_lock = threading.Lock()


@dataclass(frozen=True)
class Schema:
    """What one owner hands in: its tables and its tuning.

    `sqlite`: DDL that may run again (CREATE ... IF NOT EXISTS), applied once per file and process.
    `postgres`: forward migrations, in order; the owner's version is the number applied. Never edit one
    that has shipped: add the next. `legacy[n - 1]` is the owner's version in a database whose migrations
    were counted for all owners together (rows without an owner) and reached n.
    `configure`: run on every pooled PostgreSQL connection (adapters, session settings).
    """

    owner: str
    sqlite: str = ""
    postgres: tuple[str, ...] = ()
    legacy: tuple[int, ...] = ()
    configure: Callable[[Any], None] | None = None


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


def _wal(conn: sqlite3.Connection, tries: int = 200) -> None:
    """PRAGMA journal_mode=WAL, waiting out the moment another connection turns a new database to WAL: that
    answers "database is locked" at once, without the busy timeout (the background embedder's first
    connection met it beside ingestion's on a new home, and waited its 10 s retry)."""
    for attempt in range(tries):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == tries - 1:
                raise
            time.sleep(0.025)


def connect(path: Path, schema: Schema) -> sqlite3.Connection:
    """A new connection (one per thread): WAL, foreign keys on, waits instead of failing when busy; the
    owner's tables are created the first time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    _wal(conn)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    key = (path.resolve(), schema.owner)
    with _lock:
        if key not in _applied:
            conn.executescript(schema.sqlite)
            _applied.add(key)
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

POOL_WAIT = 5.0  # seconds an operation may wait for pooled connections, all its waits together (README)
_pools: dict[str, ConnectionPool] = {}
_owners: dict[str, dict[str, Schema]] = {}  # url -> the owners whose schema is in place, by name
_pools_lock = threading.Lock()


def _config_error(e: Exception, url: str) -> DatabaseConfigError:
    from zhiku.config import mask_url

    where = mask_url(url)
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    msg = " ".join(first.rsplit("failed: ", 1)[-1].split())  # the server's own words, without libpq's preamble
    low = str(e).lower()
    if "password authentication failed" in low or "no password supplied" in low:
        hint = f"wrong user or password in database_url ({where}): fix the URL or the server's role"
    elif "role" in low and "does not exist" in low:  # a trust server names the missing role
        hint = (f"the user (role) in database_url ({where}) does not exist on the server: create it "
                "(createuser NAME) or fix the URL")
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


def postgres_pool(url: str, schema: Schema) -> ConnectionPool:
    """The process's pool for `url` (shared by every owner), with `schema` brought up to date and its
    `configure` run on each connection. Raises DatabaseConfigError, one line naming the fix, when the
    server cannot be used."""
    import psycopg
    from psycopg_pool import ConnectionPool

    with _pools_lock:
        pool = _pools.get(url)
        owners = _owners.setdefault(url, {})
        if pool is not None and not pool.closed and schema.owner in owners:
            return pool
        try:
            with psycopg.connect(url, connect_timeout=10, autocommit=True) as conn:
                _migrate(conn, schema)
        except psycopg.Error as e:
            raise _config_error(e, url) from None
        owners[schema.owner] = schema
        if pool is not None and not pool.closed:
            if schema.configure is not None:
                pool.drain()  # the connections made before this owner came get its configure too
            return pool

        def configure(conn: Any) -> None:
            for owner in list(owners.values()):
                if owner.configure is not None:
                    owner.configure(conn)

        # A short reconnect_timeout: while the server is down the pool gives up on a slot quickly, and the
        # next request tries a fresh connection at once instead of waiting out a long back-off.
        pool = ConnectionPool(url, min_size=1, max_size=8, kwargs={"autocommit": True, "connect_timeout": 5},
                              configure=configure, check=ConnectionPool.check_connection, timeout=POOL_WAIT,
                              reconnect_timeout=2, open=True, name="zhiku")
        _pools[url] = pool
        return pool


_budget: ContextVar[list[float] | None] = ContextVar("zhiku_pool_budget", default=None)


@contextmanager
def pool_deadline(seconds: float = POOL_WAIT) -> Iterator[None]:
    """Every pool wait inside (this thread, and threads given a copy of its context) draws on one budget of
    `seconds`: an operation that takes connections one after another (a search: the base, BM25 and dense, the
    rows) gets its 503 after `seconds` of waiting in all, not `seconds` per wait. Only waiting counts: the work
    between waits (embedding the query on busy cores) does not use up the budget. Nested: the outer one holds."""
    if _budget.get() is not None:
        yield
        return
    token = _budget.set([seconds])
    try:
        yield
    finally:
        _budget.reset(token)


@contextmanager
def pooled(pool: ConnectionPool) -> Iterator[Any]:
    """A connection from `pool` within the current budget (else the pool's POOL_WAIT); a lost server or a
    pool that stays busy becomes DatabaseUnavailable (503), and the pool's check replaces dead connections on
    the next checkout, so service resumes when the server does."""
    import psycopg
    from psycopg_pool import PoolTimeout

    budget = _budget.get()
    # With the budget spent an idle connection is still taken (a timeout of 0 would refuse even that); a wait is not.
    timeout = POOL_WAIT if budget is None else min(POOL_WAIT, max(0.001, budget[0]))
    started = time.monotonic()
    try:
        with pool.connection(timeout=timeout) as conn:
            if budget is not None:
                budget[0] -= time.monotonic() - started
            yield conn
    except (psycopg.OperationalError, PoolTimeout) as e:
        raise unavailable(e) from e


def close_pools() -> None:
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
        _owners.clear()
    for pool in pools:
        pool.close()


def _migrate(conn: Any, schema: Schema) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(7265636)")  # one migrating process at a time
        conn.execute("CREATE TABLE IF NOT EXISTS zhiku_schema (version integer NOT NULL)")
        conn.execute("ALTER TABLE zhiku_schema ADD COLUMN IF NOT EXISTS owner TEXT NOT NULL DEFAULT ''")
        version = _version(conn, schema)
        steps = schema.postgres
        if version > len(steps):
            raise DatabaseConfigError(f"the database holds zhiku {schema.owner} schema version {version}, newer "
                                      f"than this zhiku knows ({len(steps)}): upgrade zhiku")
        for number, sql in enumerate(steps[version:], start=version + 1):
            conn.execute(sql)
            conn.execute("INSERT INTO zhiku_schema (owner, version) VALUES (%s, %s)", (schema.owner, number))


def _version(conn: Any, schema: Schema) -> int:
    """The owner's schema version: its own rows, else what the rows counted for all owners imply."""
    row = conn.execute("SELECT max(version) FROM zhiku_schema WHERE owner = %s", (schema.owner,)).fetchone()
    if row[0] is not None:
        return int(row[0])
    shared = int(conn.execute("SELECT max(version) FROM zhiku_schema WHERE owner = ''").fetchone()[0] or 0)
    if shared == 0:
        return 0
    if shared > len(schema.legacy):
        raise DatabaseConfigError(f"the database holds zhiku schema version {shared}, newer than this zhiku "
                                  f"knows ({len(schema.legacy)}): upgrade zhiku")
    return schema.legacy[shared - 1]


def check_database(settings: Settings, schemas: Sequence[Schema]) -> None:
    """Open the configured database once at start-up, the owners' schemas brought up to date; raises
    DatabaseConfigError naming the fix."""
    for schema in schemas if settings.uses_postgres else ():
        postgres_pool(settings.database_url, schema)


def schema_versions(url: str) -> dict[str, int]:
    """Each owner's schema version in the database at `url`."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=10, autocommit=True) as conn:
            rows = conn.execute("SELECT owner, max(version) FROM zhiku_schema GROUP BY owner ORDER BY owner")
            return {str(owner) or "all (before owners kept their own)": int(v) for owner, v in rows.fetchall()}
    except psycopg.Error as e:
        raise _config_error(e, url) from None


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

    def __init__(self, path: Path, schema: Schema) -> None:
        self._conn = connect(path, schema)
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

    def __init__(self, url: str, schema: Schema) -> None:
        self.pool = postgres_pool(url, schema)

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        from psycopg.rows import dict_row

        with pooled(self.pool) as conn:
            yield conn, conn.cursor(row_factory=dict_row)

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


def open_database(settings: Settings, schema: Schema) -> Database:
    if settings.uses_postgres:
        return PostgresDatabase(settings.database_url, schema)
    return SqliteDatabase(settings.db_path, schema)
