"""Progress of a long evaluation on stderr (stdout stays clean for --json): the CLI's, so it lives here."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from zhiku.commands.common import err_console


@contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar on stderr (stdout stays clean for --json); one bar per phase. Without a terminal
    (a background run writing a log) a plain line every tenth of each phase instead."""
    if not err_console.is_terminal:
        shown: dict[str, int] = {}

        def line(what: str, done: int, total: int) -> None:
            step = 10 * done // max(1, total)
            if done <= 1:  # a phase (re)starts: the same name comes again in each run of a sweep or set
                shown.pop(what, None)
            if shown.get(what, -1) < step:
                shown[what] = step
                err_console.print(f"{time.strftime('%H:%M:%S')} {what}: {done}/{total}", highlight=False)

        yield line
        return
    with Progress(TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err_console, transient=True) as progress:
        tasks: dict[str, Any] = {}

        def update(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = progress.add_task(what, total=total)
            progress.update(tasks[what], completed=done, total=total)

        yield update
