"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from fastapi import Request

from zhiku.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services
