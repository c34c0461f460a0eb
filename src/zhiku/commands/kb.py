"""zhiku kb create | list | show | add | embed | sync | search | rm-doc | rebuild | delete | import-chatchat"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from zhiku.commands.common import cli_settings, console, err_console, fail
from zhiku.config import TOP_K_MAX
from zhiku.db import DatabaseError
from zhiku.errors import disk_full
from zhiku.kb.ingest import Outcome
from zhiku.kb.service import KBService
from zhiku.kb.types import DocInfo, KBError, StorageFull

app = typer.Typer(no_args_is_help=True)


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Refusals and a full disk end the command with one line and exit code 1, never a traceback."""
    try:
        yield
    except StorageFull as e:  # the service's message names no path (it may go to a remote client): add it here
        fail(f"{e} (ZHIKU_HOME: {cli_settings().home})")
    except (KBError, DatabaseError) as e:
        fail(str(e))
    except (OSError, sqlite3.Error) as e:
        if not disk_full(e):
            raise
        fail(f"disk full: no space left under ZHIKU_HOME ({cli_settings().home}): {e}")


@contextmanager
def service() -> Iterator[KBService]:
    with _one_line_errors():
        svc = KBService(cli_settings())
    with _one_line_errors():
        try:
            yield svc
        finally:
            svc.close()


@contextmanager
def progress_bars(quiet: bool = False) -> Iterator[Callable[[str, int, int], None] | None]:
    """Two bars, files and chunks, with rate and ETA, fed by the service's progress callback."""
    if quiet:
        yield None
        return
    with Progress(TextColumn("{task.description:>7}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                  console=err_console, transient=False) as bars:
        tasks: dict[str, TaskID] = {}
        started = time.monotonic()

        def report(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bars.add_task(what, total=total or None, rate="")
            rate = done / max(time.monotonic() - started, 1e-6)
            bars.update(tasks[what], completed=done, total=total or None, rate=f"{rate:6.1f}/s")

        yield report


def _doc_line(d: DocInfo, kind: str = "") -> str:
    if kind == "skipped":  # refused by the folder scan: never read, nothing stored
        return f"[-] {escape(d.path)}: not read ({escape(d.error or '')})"
    if kind == "removed":
        return f"[{d.id}] {escape(d.path)}: removed (no longer in the folder)"
    status = "unchanged" if kind == "unchanged" else d.status  # an unchanged file was not read again
    line = f"[{d.id}] {escape(d.path)}: {status}, {d.chunk_count} chunks"
    return line + (f" ({escape(d.error)})" if d.error else "")


def _print_outcome(o: Outcome) -> None:
    """One line per file as it is committed, so a full disk or a failure later keeps the report so far."""
    console.print(_doc_line(o.doc, o.kind), highlight=False)


def _when(epoch: float | None) -> str:
    return "-" if epoch is None else datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


@app.command()
def create(name: str, description: str = typer.Option("", "--description", "-d"),
           embedder: str = typer.Option(None, "--embedder", "-e", help="e5-small | use-m3 | st:<folder> | ..."),
           chunk_size: int = typer.Option(None, "--chunk-size", help="characters per chunk"),
           chunk_overlap: int = typer.Option(None, "--chunk-overlap", help="characters shared by neighbours"),
           title_enhance: bool = typer.Option(None, "--title-enhance/--no-title-enhance",
                                              help="prefix each chunk with its heading trail")) -> None:
    """Create a knowledge base."""
    with service() as svc:
        info = svc.create(name, description, embedder, chunk_size, chunk_overlap, title_enhance)
    console.print(f"created knowledge base {escape(info.name)} (embedder {info.embedder}, {info.dim}-d, "
                  f"chunks of {info.chunk_size} with {info.chunk_overlap} overlap)")


@app.command("list")
def list_(all_: bool = typer.Option(False, "--all", help="include temporary (file chat) bases")) -> None:
    """List knowledge bases."""
    with service() as svc:
        kbs = svc.list(include_temporary=all_)
    table = Table("name", "documents", "chunks", "embedder", "created", "description")
    for k in kbs:
        table.add_row(escape(k.name), str(k.documents), str(k.chunks), k.embedder,
                      _when(k.created)[:-3], escape(k.description))
    console.print(table)


@app.command()
def show(name: str) -> None:
    """Show a knowledge base and its documents."""
    with service() as svc:
        info = svc.get(name)
        docs = svc.documents(name)
    for key, value in dataclasses.asdict(info).items():
        if key in ("created", "expires_at"):
            value = _when(value)
        console.print(f"{key}: {escape(str(value))}", highlight=False)
    table = Table("id", "path", "status", "chunks", "size", "loader", "error")
    for d in docs:
        table.add_row(str(d.id), escape(d.path), d.status, str(d.chunk_count), str(d.size), d.loader,
                      escape(d.error or ""))
    console.print(table)


@app.command()
def add(name: str, paths: list[Path] = typer.Argument(..., help="files or folders"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
        wait: bool = typer.Option(False, "--wait", help="embed every chunk before each file is stored and return "
                                                        "only then (one phase); by default files are searchable "
                                                        "(BM25) at once and embedded in the background")) -> None:
    """Add files or folders (unchanged files are skipped, changed ones replaced)."""
    seen: Counter[str] = Counter()

    def done(o: Outcome) -> None:
        seen["not read" if o.kind == "skipped" else "failed" if o.doc.status == "failed" else o.kind] += 1
        _print_outcome(o)

    with service() as svc:
        with progress_bars(quiet) as report:
            svc.add_files(name, paths, progress=report, on_file=done, wait=wait)
        status = svc.embedding.status(name)
    # every entry a folder scan saw is counted: stored, unchanged, failed or not read
    kinds = ("added", "updated", "unchanged", "failed", "not read")
    console.print(f"{sum(seen.values())} files: " + ", ".join(f"{seen[k]} {k}" for k in kinds), highlight=False)
    if seen["failed"] or seen["not read"]:
        err_console.print(f"{seen['failed']} failed, {seen['not read']} not read", highlight=False)
    if not status.complete:
        _say(f"searchable now (full-text); {status.text()}: a running `zhiku serve` embeds them in the "
             f"background, or run `zhiku kb embed {escape(name)}`", err=True)


@app.command()
def embed(name: str, quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar")) -> None:
    """Embed the knowledge base's queued chunks here (or wait while another process does) until all have vectors."""
    with service() as svc:
        with progress_bars(quiet) as report:
            here = svc.wait_embedded(name, progress=report)
        status = svc.embedding.status(name)
    console.print(f"{escape(name)}: {status.embedded:,} / {status.total:,} chunks embedded ({here:,} here)")


@app.command()
def sync(name: str, directory: Path, quiet: bool = typer.Option(False, "--quiet", "-q")) -> None:
    """Make the knowledge base hold exactly the folder's files (by content hash); one line per file as it is done,
    so a failure (a full disk) keeps the report so far."""
    with service() as svc, progress_bars(quiet) as report:
        result = svc.sync(name, directory, progress=report, on_file=_print_outcome)
    console.print(", ".join(f"{k}: {len(v)}" for k, v in result.items()))
    if result["failed"] or result["skipped"]:
        err_console.print(f"{len(result['failed'])} failed, {len(result['skipped'])} not read")


@app.command()
def search(name: str, query: str, top_k: int = typer.Option(None, "--top-k", "-k", min=1, max=TOP_K_MAX),
           mode: str = typer.Option("hybrid", "--mode", help="hybrid | bm25 | dense"),
           score_threshold: float = typer.Option(None, "--threshold", min=0.0, max=1.0),
           as_json: bool = typer.Option(False, "--json", help="print a JSON list of hits")) -> None:
    """Search a knowledge base (unset --top-k and --threshold: the configured ones)."""
    with service() as svc:
        hits = svc.search(name, query, top_k=top_k, mode=mode, score_threshold=score_threshold)
        partly = svc.partly_embedded(name, mode)
    if as_json:
        out = [{"score": h.score, "text": h.text, "document": h.document, "document_id": h.document_id,
                "page": h.page, "heading": h.heading, "chunk_id": h.chunk_id} for h in hits]
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return
    if partly is not None:
        _say(f"note: {partly.text()} (dense search saw only the embedded ones)", err=True)
    for i, h in enumerate(hits, 1):
        where = h.document + (f", p. {h.page}" if h.page is not None else "")
        where += f" — {' > '.join(h.heading)}" if h.heading else ""
        console.print(f"[bold]{i}. {h.score:.3f}[/] {escape(where)}", highlight=False)
        console.print(escape(h.text), highlight=False)
        console.print()


@app.command("rm-doc")
def rm_doc(name: str, doc: str = typer.Argument(..., help="document id or path")) -> None:
    """Remove a document with its chunks, vectors and index entries."""
    with service() as svc:
        docs = svc.documents(name)
        match = [d for d in docs if str(d.id) == doc or d.path == doc]
        if not match:
            fail(f"no document '{doc}' in knowledge base '{name}'")
        svc.delete_document(name, match[0].id)
    console.print(f"removed {escape(match[0].path)}")


@app.command()
def rebuild(name: str, embedder: str = typer.Option(None, "--embedder", "-e", help="switch to this embedder"),
            quiet: bool = typer.Option(False, "--quiet", "-q"),
            wait: bool = typer.Option(True, "--wait/--no-wait", help="embed here until the switch (default), or "
                                                                     "queue the rebuild for a running server")) -> None:
    """Re-embed every chunk (optionally with another embedder) through the embedding queue: the base keeps
    answering with BM25 and its old vectors until every chunk has its new one, then switches at once. Cut
    short, it resumes (run it again, `zhiku kb embed`, or a running server)."""
    with service() as svc, progress_bars(quiet) as report:
        svc.rebuild(name, progress=report, embedder=embedder, wait=wait)
        info = svc.get(name)
    if info.rebuilding is not None:
        _say(f"{escape(name)}: {info.embedding}; searches use its {info.embedder} vectors until then. A running "
             f"`zhiku serve` embeds it in the background, or run `zhiku kb embed {escape(name)}`")
    else:
        console.print(f"rebuilt {escape(name)}: {info.chunks} chunks with {info.embedder}")


@app.command()
def delete(name: str, yes: bool = typer.Option(False, "--yes", "-y", help="do not ask")) -> None:
    """Delete a knowledge base, its documents and its files."""
    if not yes and not typer.confirm(f"delete knowledge base '{name}' and all its documents?"):
        raise typer.Exit(1)
    with service() as svc:
        svc.delete(name)
    console.print(f"deleted {escape(name)}")


def _say(text: str, err: bool = False) -> None:
    (err_console if err else console).print(text, highlight=False, soft_wrap=True)


@app.command("import-chatchat")
def import_chatchat(path: Path = typer.Argument(..., help="Chatchat's knowledge_base folder (holds info.db)"),
                    kb: list[str] = typer.Option(None, "--kb", help="only this knowledge base (repeatable)"),
                    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars")) -> None:
    """Import a Langchain-Chatchat 0.2 knowledge_base folder: each base's files, re-embedded (FAISS never opened)."""
    from zhiku.kb.chatchat_import import import_folder

    with service() as svc, progress_bars(quiet) as report:
        results = import_folder(svc, path, kb, progress=report, on_base=lambda b: _say(
            f"importing {escape(b.name)}: {len(b.files)} file{'' if len(b.files) == 1 else 's'} listed in info.db",
            err=True), on_file=_print_outcome)
    for r in results:
        if r.error:
            _say(f"{escape(r.name)}: {escape(r.error)}", err=True)
            continue
        _say(f"{escape(r.name)}{' (new)' if r.created else ''}: {len(r.added)} added, {len(r.updated)} updated, "
             f"{len(r.unchanged)} already in, {len(r.failed)} failed, {len(r.missing)} missing")
        for rel, why in r.failed.items():
            _say(f"  failed: {escape(rel)}: {escape(why)}", err=True)
        for rel in r.missing:
            _say(f"  missing: {escape(rel)} is listed in info.db but not in content/", err=True)
        for note in r.notes:
            _say(f"  note: {escape(note)}")
    if not all(r.ok for r in results):
        raise typer.Exit(1)
