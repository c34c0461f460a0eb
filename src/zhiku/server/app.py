"""create_app: one FastAPI app serving /v1, /api, the Chatchat 0.2 routes, /health, /metrics and (optionally) the
web UI at /."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from zhiku import __version__
from zhiku.config import Settings
from zhiku.server import api_chat, api_kb, errors, openai_api, ops, security
from zhiku.server.auth import KeyRing
from zhiku.server.chatchat import routes as chatchat
from zhiku.server.paths import ServerPathsFirst
from zhiku.services import Services

ROUTERS = (ops.router, openai_api.router, api_kb.router, api_chat.router,
           chatchat.router)  # Langchain-Chatchat 0.2's routes at its own paths


def server_prefixes(app: FastAPI) -> tuple[str, ...]:
    """The first path segment of every route the server answers itself (/v1, /api, /health, /docs, ...):
    the paths the web UI, mounted at "/", must leave to the server."""
    routes = [*app.routes, *(route for router in (*ROUTERS, *chatchat.PARTS) for route in router.routes)]
    paths = [path for route in routes if (path := getattr(route, "path", "")).strip("/")]
    return tuple(sorted({"/" + p.strip("/").split("/", 1)[0].lower() for p in paths}))


def create_app(settings: Settings, services: Services | None = None, ui: bool | None = None,
               preload: bool = True) -> FastAPI:
    """Build the app. `preload` loads the LLM at start-up so the first request is not slow."""
    services = services or Services(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if preload:
            services.llm.start()
        services.kb.embedding.start()  # chunks queued by uploads (or left by a stopped process) get vectors
        try:
            yield
        finally:
            services.close()

    app = FastAPI(title="zhiku", version=__version__, lifespan=lifespan,
                  description="知库 zhiku: offline knowledge-base question answering")
    app.state.services = services
    app.state.settings = settings
    errors.install(app)
    security.install(app, settings)  # CORS, API key, body/upload/message limits
    for router in ROUTERS:
        app.include_router(router)
    if settings.ui if ui is None else ui:
        from zhiku.webui.app import mount_ui

        keys = KeyRing.from_settings(settings) if security.auth_configured(settings) else None
        mount = mount_ui(app, services, password=None if keys is None else keys.check)
        # every path the server answers, the UI's own download route included, stays the server's
        mount.app = ServerPathsFirst(mount.app, server_prefixes(app))
    return app
