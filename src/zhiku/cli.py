"""The `zhiku` command: start, serve, models, kb, ask, eval, bench, config, db."""

from __future__ import annotations

import typer

from zhiku.commands import bench, chat, config, db, evaluate, kb, models, serve

app = typer.Typer(help="知库 zhiku: offline knowledge-base question answering.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)
app.command("start")(serve.start)
app.command("serve")(serve.serve)
app.command("ask")(chat.ask)
app.add_typer(models.app, name="models", help="Install and manage model packs.")
app.add_typer(kb.app, name="kb", help="Create, fill and search knowledge bases.")
app.add_typer(evaluate.app, name="eval", help="Measure retrieval and answer quality.")
app.add_typer(bench.app, name="bench", help="Benchmarks: llm, kb, chat.")
app.add_typer(config.app, name="config", help="Show the effective settings.")
app.add_typer(db.app, name="db", help="The database: migrate SQLite to PostgreSQL, show the schema version.")
