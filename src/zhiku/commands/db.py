"""zhiku db migrate | version"""

from __future__ import annotations

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from zhiku.commands.common import cli_settings, console, err_console, fail
from zhiku.config import mask_url
from zhiku.db import DatabaseError
from zhiku.kb.types import KBError

app = typer.Typer(no_args_is_help=True)


@app.command()
def migrate(to: str = typer.Option(..., "--to", help="postgresql://user:password@host:port/database"),
            quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars")) -> None:
    """Copy this home's SQLite database (knowledge bases, vectors, originals, conversations, feedback) into
    PostgreSQL without re-embedding. Safe to run again after an interruption: what was copied is skipped."""
    from zhiku.migrate import migrate as run

    if not to.startswith(("postgresql://", "postgres://")):
        fail(f"--to must be a postgresql:// URL, not {mask_url(to)!r}")
    settings = cli_settings()
    with Progress(TextColumn("{task.description:>13}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err_console, disable=quiet) as bars:
        tasks: dict[str, TaskID] = {}

        def report(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bars.add_task(what, total=total)
            bars.update(tasks[what], completed=done, total=total)

        try:
            result = run(settings.home, settings.db_path, to, report)
        except (KBError, DatabaseError) as e:
            fail(str(e))
    console.print(f"copied {result.copied_documents} documents ({result.skipped_documents} already there), "
                  f"{result.conversations} conversations to {mask_url(to)}")
    for what, (a, b) in result.counts.items():
        console.print(f"  {what}: {a} -> {b}", highlight=False)
    if result.mismatches:
        fail("counts differ after the copy: " + "; ".join(result.mismatches))
    console.print(f"done: set database_url = \"{mask_url(to)}\" (with your password) in zhiku.toml or "
                  "ZHIKU_DATABASE_URL to use it", highlight=False)


@app.command()
def version() -> None:
    """The database in use and, for PostgreSQL, its zhiku schema version."""
    from zhiku import db

    settings = cli_settings()
    if not settings.uses_postgres:
        console.print(f"sqlite {settings.db_path}", highlight=False)
        return
    try:
        versions = ", ".join(f"{owner} {v}" for owner, v in db.schema_versions(settings.database_url).items())
        console.print(f"postgresql {mask_url(settings.database_url)} schema {versions}", highlight=False)
    except DatabaseError as e:
        fail(str(e))
