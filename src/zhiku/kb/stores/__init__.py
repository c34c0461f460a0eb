"""The stores behind kb/store.py's protocol; `database_url` chooses one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from zhiku.config import Settings
from zhiku.kb.store import KBRecord, Store


def open_store(settings: Settings, folder_of: Callable[[KBRecord], Path] | None = None) -> Store:
    if settings.uses_postgres:
        from zhiku.kb.stores.postgres.store import PostgresStore

        return PostgresStore(settings.database_url)
    from zhiku.kb.stores.sqlite.store import SQLiteStore

    return SQLiteStore(settings.db_path, folder_of, settings.ann_threshold, settings.embed_threads)
