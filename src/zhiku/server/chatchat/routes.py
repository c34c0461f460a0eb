"""All Chatchat 0.2 routes in one router, mounted by create_app."""

from __future__ import annotations

from fastapi import APIRouter

from zhiku.server.chatchat import chat, knowledge_base, misc

PARTS = (chat.router, knowledge_base.router, misc.router)
router = APIRouter()
for part in PARTS:
    router.include_router(part)
