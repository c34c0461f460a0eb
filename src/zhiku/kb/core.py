"""What every part of KBService shares, as one object the parts are handed: the settings, the store, each
knowledge base's folder and lock, and the embedder a knowledge base was built with. KBService
(kb/service.py) composes it with its parts (kb/documents.py, ...); none of them reaches into another's state.

Under $ZHIKU_HOME each knowledge base has a folder kb/<name>/ with `files/<sha256>/<name>`: the originals,
for download and re-indexing (with PostgreSQL the database keeps them too, and this folder is a local copy
of what this process needs).
"""

from __future__ import annotations

import threading
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

from zhiku.config import Settings
from zhiku.embed.base import Embedder, EmbedderError
from zhiku.kb import names
from zhiku.kb.staging import sweep_all_staging
from zhiku.kb.store import KBRecord, Store
from zhiku.kb.stores import open_store
from zhiku.kb.types import EmbedderMismatch, KBError

if TYPE_CHECKING:
    from zhiku.kb.loaders.ocr import OcrOptions


class KBContext:
    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.root = settings.home / "kb"
        self.store: Store = store or open_store(settings, lambda kb: self.folder(kb.name))
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()
        sweep_all_staging(self.root)  # upload copies a killed process left behind

    def folder(self, name: str) -> Path:
        return names.inside(self.root, self.root / names.validate_kb_name(name))

    def lock(self, name: str) -> threading.RLock:
        """One writer per knowledge base in this process (the store keeps writers of other processes safe)."""
        with self._guard:
            return self._locks.setdefault(unicodedata.normalize("NFC", name), threading.RLock())

    def record(self, name: str) -> KBRecord:
        return self.store.get_kb(names.validate_kb_name(name))  # NFD and NFC spellings find one base

    def embedder(self, spec: str) -> Embedder:
        from zhiku.embed.registry import get_embedder

        try:
            return get_embedder(spec, self.settings)
        except EmbedderError as e:
            raise KBError(str(e)) from e

    def kb_embedder(self, kb: KBRecord) -> Embedder:
        emb = self.embedder(kb.embedder)
        if emb.dim != kb.dim:
            raise EmbedderMismatch(f"knowledge base '{kb.name}' holds {kb.dim}-d vectors but embedder "
                                   f"'{kb.embedder}' now makes {emb.dim}-d ones; run `zhiku kb rebuild {kb.name}`")
        return emb

    def ocr(self) -> OcrOptions:
        from zhiku.kb.loaders.ocr import OcrOptions

        s = self.settings
        return OcrOptions(s.ocr, s.ocr_max_pages, s.ocr_threads, s.ocr_model, s.ocr_pictures)


def embedder_id_or_error(spec: str) -> str:
    """The canonical id of an embedder spec, or a KBError saying why it is not one."""
    from zhiku.embed.registry import embedder_id

    try:
        return embedder_id(spec)
    except EmbedderError as e:
        raise KBError(str(e)) from e
