"""Start the server process."""

from __future__ import annotations

import uvicorn

from zhiku.config import Settings
from zhiku.server.app import create_app
from zhiku.server.security import startup_checks
from zhiku.services import Services


def serve(settings: Settings, ui: bool | None = None) -> None:
    startup_checks(settings)  # exposure warning; a bad keys file stops here, before the model loads
    services = Services(settings)
    services.llm.start()  # load first: a missing or corrupt model is a one-line ModelError, not a traceback
    app = create_app(settings, services=services, ui=ui)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info",
                timeout_graceful_shutdown=5)
