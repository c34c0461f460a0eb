"""Import a Langchain-Chatchat 0.2 `knowledge_base/` folder (its KB_ROOT_PATH) into zhiku.

Chatchat keeps one folder per knowledge base, `<kb>/content/` with the original files and `<kb>/vector_store/`
with a pickled FAISS index, and beside them `info.db` (SQLite) listing the bases (`knowledge_base`: kb_name,
kb_info, vs_type, embed_model) and their files (`knowledge_file`). zhiku re-reads the originals and embeds
them with its own embedder through KBService.add_files: the FAISS index is never opened (unpickling runs
arbitrary code, and its vectors come from a model zhiku does not have). Each base becomes a zhiku knowledge
base of the same name; a second run skips every file already in with the same content.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from zhiku.kb import names
from zhiku.kb.documents import FileDone, supported_suffixes
from zhiku.kb.service import KBService
from zhiku.kb.types import KBError, KBNotFound, Progress

INFO_DB = "info.db"
# Chatchat 0.2.x keeps chunk sizes in configs/kb_config.py, not in info.db; read them when a fork adds them.
OPTIONAL_COLUMNS = ("chunk_size", "chunk_overlap", "zh_title_enhance")


class ChatchatImportError(KBError):
    """The folder cannot be imported at all (no info.db, or not Chatchat's)."""


@dataclass
class ChatchatBase:
    """One knowledge base as info.db describes it."""

    name: str
    description: str = ""
    embed_model: str = ""
    vs_type: str = ""
    files: list[str] = field(default_factory=list)  # relative to <kb>/content/, '/'-separated
    custom_docs: list[str] = field(default_factory=list)  # files whose chunks were given by hand
    chunk_size: int | None = None
    chunk_overlap: int | None = None
    title_enhance: bool | None = None


@dataclass
class BaseReport:
    """What happened to one base: files by outcome, per-file errors, and notes for the user."""

    name: str
    created: bool = False
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # listed in info.db, absent from content/
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # the whole base was refused

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed and not self.missing


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}  # table: one of two constants


def _relative(file_name: str) -> str:
    """A file name from info.db as a '/'-separated path (Chatchat on Windows wrote backslashes)."""
    return PurePosixPath(file_name.replace("\\", "/")).as_posix().lstrip("/")


def read_info_db(root: Path) -> list[ChatchatBase]:
    """The knowledge bases listed in `root/info.db`, read-only; ChatchatImportError if it is not Chatchat's."""
    path = root / INFO_DB
    if not path.is_file():
        raise ChatchatImportError(f"no {INFO_DB} in {root}: give Chatchat's knowledge_base folder (KB_ROOT_PATH), "
                                  "the one that holds info.db and a folder per knowledge base")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise ChatchatImportError(f"cannot open {path}: {e}") from e
    try:
        kb_cols, file_cols = _columns(conn, "knowledge_base"), _columns(conn, "knowledge_file")
        if not {"kb_name"} <= kb_cols or not {"file_name", "kb_name"} <= file_cols:
            tables = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
            raise ChatchatImportError(
                f"{path} is not a Langchain-Chatchat info.db: it needs the tables knowledge_base(kb_name, ...) and "
                f"knowledge_file(file_name, kb_name, ...); it has {', '.join(tables) or 'no tables'}")
        wanted = ["kb_name"] + [c for c in ("kb_info", "embed_model", "vs_type", *OPTIONAL_COLUMNS) if c in kb_cols]
        bases: dict[str, ChatchatBase] = {}
        for row in conn.execute(f"SELECT {', '.join(wanted)} FROM knowledge_base ORDER BY id"):
            values = dict(zip(wanted, row, strict=True))
            base = ChatchatBase(name=str(values["kb_name"]), description=str(values.get("kb_info") or ""),
                                embed_model=str(values.get("embed_model") or ""),
                                vs_type=str(values.get("vs_type") or ""))
            if values.get("chunk_size"):
                base.chunk_size = int(values["chunk_size"])
                base.chunk_overlap = int(values.get("chunk_overlap") or 0)
            if values.get("zh_title_enhance") is not None:
                base.title_enhance = bool(values["zh_title_enhance"])
            bases[base.name] = base
        custom = "custom_docs" in file_cols
        query = f"SELECT kb_name, file_name{', custom_docs' if custom else ''} FROM knowledge_file ORDER BY id"
        for row in conn.execute(query):
            owner = bases.get(str(row[0]))
            if owner is not None:
                owner.files.append(_relative(str(row[1])))
                if custom and row[2]:
                    owner.custom_docs.append(_relative(str(row[1])))
        return list(bases.values())
    except sqlite3.DatabaseError as e:
        raise ChatchatImportError(f"{path} is not a readable SQLite database: {e}") from e
    finally:
        conn.close()


def import_base(kb: KBService, root: Path, base: ChatchatBase, progress: Progress | None = None,
                on_file: FileDone | None = None) -> BaseReport:
    """Import one base: create it if new, then add every supported file under <kb>/content/ (`on_file` hears
    of each as it is committed, so a failure later, such as a full disk, keeps the report so far)."""
    report = BaseReport(base.name)
    try:
        names.validate_kb_name(base.name)
    except KBError as e:
        report.error = f"skipped: zhiku refuses the name ({e})"
        return report
    content = root / base.name / "content"
    if not content.is_dir():
        report.error = f"skipped: its folder {content} does not exist"
        return report
    try:  # the scan follows links only inside content/: content/ itself must not lead out of the folder
        names.inside(root, content)
    except KBError:
        report.error = f"skipped: its folder {content} is a link to {content.resolve()}, outside {root}: not followed"
        return report
    try:
        kb.get(base.name)
    except KBNotFound:
        kb.create(base.name, base.description, chunk_size=base.chunk_size, chunk_overlap=base.chunk_overlap,
                  title_enhance=base.title_enhance)
        report.created = True
    suffixes = supported_suffixes()
    for rel in base.files:
        try:
            path = names.inside(content, content / rel)
        except KBError:
            report.failed[rel] = "its path leads outside the content folder; not read"
            continue
        if not path.is_file():
            report.missing.append(rel)
        elif path.suffix.lower() not in suffixes:
            report.failed[rel] = f"zhiku cannot read {path.suffix or 'files without a suffix'}"
    if base.custom_docs:
        report.notes.append(f"{len(base.custom_docs)} file(s) had hand-made chunks that exist only in the FAISS "
                            "index; they were read again from content/ instead")
    if base.embed_model:
        report.notes.append(f"re-embedded with zhiku's embedder (Chatchat used {base.embed_model})")
    before = {d.path: d.sha256 for d in kb.documents(base.name)}
    for doc in kb.add_files(base.name, [content], progress=progress, on_file=on_file):
        if doc.status == "failed":
            report.failed[doc.path] = doc.error or "failed"
        elif doc.path not in before:
            report.added.append(doc.path)
        else:
            (report.unchanged if before[doc.path] == doc.sha256 else report.updated).append(doc.path)
    return report


def import_folder(kb: KBService, root: Path, only: Sequence[str] | None = None, progress: Progress | None = None,
                  on_base: Callable[[ChatchatBase], None] | None = None, on_file: FileDone | None = None
                  ) -> list[BaseReport]:
    """Import the bases of a Chatchat knowledge_base folder (all, or those named in `only`)."""
    root = Path(root).expanduser()
    if root.is_file() and root.name == INFO_DB:
        root = root.parent
    bases = read_info_db(root)
    reports: list[BaseReport] = []
    if only:
        known = {b.name for b in bases}
        for name in only:
            if name not in known:
                reports.append(BaseReport(name, error=f"not in {root / INFO_DB} (it lists: "
                                                      f"{', '.join(sorted(known)) or 'no knowledge bases'})"))
        bases = [b for b in bases if b.name in set(only)]
    for base in bases:
        if on_base is not None:
            on_base(base)
        reports.append(import_base(kb, root, base, progress, on_file))
    return reports
