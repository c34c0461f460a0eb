"""zhiku start | serve"""

from __future__ import annotations

import typer

from zhiku import packs
from zhiku.commands.common import byte_progress, cli_settings, err_console, fail
from zhiku.config import Settings
from zhiku.errors import ModelError

ModelOpt = typer.Option(None, "--model", "-m", help="model pack name or path to a .gguf file")
HostOpt = typer.Option(None, "--host", help="address to bind (default 127.0.0.1)")
PortOpt = typer.Option(None, "--port", "-p", help="port (default 8000)")
ParallelOpt = typer.Option(None, "--parallel", help="concurrent generation slots")
CtxOpt = typer.Option(None, "--ctx", help="context window per slot, in tokens")
ThreadsOpt = typer.Option(None, "--threads", help="CPU threads (0 = all)")
UiOpt = typer.Option(True, "--ui/--no-ui", help="serve the web UI at /")


def _run(settings: Settings, ui: bool) -> None:
    from zhiku.chat.schema import HISTORY
    from zhiku.db import DatabaseError, check_database
    from zhiku.kb.stores.postgres.schema import OWNER as KB
    from zhiku.server.run import serve as run_server

    try:
        check_database(settings, [KB, HISTORY])  # a wrong database_url stops here, in one line, not at the first request
    except DatabaseError as e:
        fail(str(e))
    try:
        run_server(settings, ui=ui and settings.ui)
    except ModelError as e:
        fail(str(e))


def serve(model: str = ModelOpt, host: str = HostOpt, port: int = PortOpt, parallel: int = ParallelOpt,
          ctx: int = CtxOpt, threads: int = ThreadsOpt, ui: bool = UiOpt) -> None:
    """Serve a model: the OpenAI API at /v1, the app API at /api and the web UI at /."""
    settings = cli_settings(model=model, host=host, port=port, parallel=parallel, ctx=ctx, threads=threads)
    _run(settings, ui)


def start(model: str = ModelOpt, host: str = HostOpt, port: int = PortOpt, parallel: int = ParallelOpt,
          ctx: int = CtxOpt, threads: int = ThreadsOpt, ui: bool = UiOpt) -> None:
    """The everyday command: install the model pack if it is missing, then serve."""
    settings = cli_settings(model=model, host=host, port=port, parallel=parallel, ctx=ctx, threads=threads)
    name = settings.model
    if settings.llm_backend == "llama_cpp" and name in packs.PACKS and not packs.installed(settings.models_path, name):
        err_console.print(f"installing model pack {name} (first start only)")
        try:
            with byte_progress() as progress:
                task = progress.add_task(name, total=None)
                packs.pull(settings.models_path, name,
                           progress=lambda what, done, total: progress.update(
                               task, description=what, completed=done, total=total))
        except ModelError as e:
            fail(str(e))
    _run(settings, ui)
