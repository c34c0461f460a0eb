"""Upload staging folders, kb/<name>/.upload-*/: a full copy of an upload while it is ingested.

An upload stages its files while it holds the knowledge base's ingestion lock (a shared flock on
kb/<name>/.ingest.lock, kb/documents.py). Whoever gets that lock exclusively knows that no ingestion of
any process is under way there, so every staging folder left is a dead one (a server killed mid-upload)
and is removed: before each ingestion, and for every knowledge base when the service starts.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import tempfile
from pathlib import Path

PREFIX = ".upload-"
LOCK_FILE = ".ingest.lock"

log = logging.getLogger("zhiku")


def staging_folder(kb_folder: Path) -> tempfile.TemporaryDirectory[str]:
    """A fresh staging folder inside the knowledge base's folder, removed on exit (hold the ingestion
    lock while it exists)."""
    return tempfile.TemporaryDirectory(dir=kb_folder, prefix=PREFIX)


def sweep_staging(kb_folder: Path) -> int:
    """Remove the staging folders of `kb_folder`; only for a caller holding its ingestion lock exclusively.
    Returns how many were removed."""
    removed = 0
    for d in kb_folder.glob(PREFIX + "*"):
        if d.is_dir() and not d.is_symlink():
            shutil.rmtree(d, ignore_errors=True)
            removed += 1
    return removed


def sweep_all_staging(root: Path) -> int:
    """At start-up: the dead staging folders of every knowledge base under `root` (kb/) whose ingestion
    lock is free; a base another process is ingesting into keeps its folders (they may be live)."""
    removed = 0
    for kb_folder in root.iterdir() if root.is_dir() else ():
        if not any(kb_folder.glob(PREFIX + "*")):
            continue
        try:
            with (kb_folder / LOCK_FILE).open("a+b") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                removed += sweep_staging(kb_folder)
        except BlockingIOError:
            continue
        except OSError as e:  # an unwritable folder must not stop the service from starting
            log.warning("could not sweep the upload staging folders of %s: %s", kb_folder.name, e)
    if removed:
        log.info("removed %d upload staging folder(s) left by an interrupted upload", removed)
    return removed
