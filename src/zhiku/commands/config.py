"""zhiku config show"""

from __future__ import annotations

import json

import typer
from rich.table import Table

from zhiku.commands.common import cli_settings, console
from zhiku.config import setting_sources, shown_settings

app = typer.Typer(no_args_is_help=True)


@app.command()
def show(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Print the effective settings and where each value came from (keys, tokens and passwords masked)."""
    values = shown_settings(cli_settings())
    sources = setting_sources()
    if as_json:
        print(json.dumps({k: {"value": v, "source": sources[k]} for k, v in values.items()}, ensure_ascii=False))
        return
    table = Table("setting", "value", "source")
    for key, value in values.items():
        table.add_row(key, json.dumps(value, ensure_ascii=False), sources[key])
    console.print(table)
