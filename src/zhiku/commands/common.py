"""Helpers shared by the CLI commands."""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from zhiku.config import CONFIG_FILE, Settings, default_home, load_settings, setting_sources

# Output never depends on an assumed width: a message is one line whatever COLUMNS says (soft_wrap; a
# terminal folds it for the eye), and to a pipe or a file a table is as wide as its contents (a script
# reads whole values, not "qwen2.5-co…"). On a terminal, tables fit the terminal.
PIPED_WIDTH = 1000


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    on_terminal = bool(getattr(stream, "isatty", None) and stream.isatty())
    return Console(stderr=stderr, soft_wrap=True, width=None if on_terminal else PIPED_WIDTH)


console = _console()
err_console = _console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line error and exit."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def cli_settings(**flags: Any) -> Settings:
    """The effective settings (`flags` from the command line, None = not given). A bad value in a ZHIKU_*
    variable, zhiku.toml or a flag ends the command with one line that names it, never a traceback."""
    try:
        return load_settings(**flags)
    except ValidationError as e:
        fail(settings_message(e, flags))
    except tomllib.TOMLDecodeError as e:
        fail(f"{default_home() / CONFIG_FILE} is not valid TOML: {e}")


def settings_message(e: ValidationError, flags: dict[str, Any] | None = None) -> str:
    """One line for every invalid setting: its name, where the value came from, the value and the problem."""
    sources = setting_sources(**(flags or {}))
    problems = []
    for err in e.errors():
        name = str(err["loc"][0]) if err.get("loc") else "?"
        where = {"env": f"env ZHIKU_{name.upper()}", "cli": "command line", "default": "default"}.get(
            sources.get(name, ""), sources.get(name, "?"))
        problems.append(f"{name}={err.get('input')!r} ({where}): {err.get('msg', 'invalid')}")
    return "invalid settings: " + "; ".join(problems)


@contextmanager
def byte_progress() -> Iterator[Progress]:
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=err_console, transient=False) as progress:
        yield progress
