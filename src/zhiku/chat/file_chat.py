"""File chat: uploads go into a temporary knowledge base tied to the conversation, then KB QA over it."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from zhiku.chat import kb_chat
from zhiku.chat.errors import ChatError, FilesExpired
from zhiku.chat.history import HistoryStore
from zhiku.chat.turn import KB, Turn
from zhiku.chat.types import ID_PATTERN, ChatEvent
from zhiku.config import Settings
from zhiku.kb.types import KBError, KBNotFound

PREFIX = "file-chat-"
EXPIRED = "the files uploaded to this conversation have expired (after {ttl:g} minutes); upload them again"


def kb_name_for(conversation_id: str) -> str:
    return PREFIX + conversation_id[:40]


def upload(settings: Settings, store: HistoryStore, kb: KB, files: list[tuple[str, bytes]],
           conversation_id: str | None = None) -> dict[str, Any]:
    """Add files to the conversation's temporary knowledge base (created on first upload). Blocking."""
    if not files:
        raise ChatError("no files uploaded")
    if conversation_id is not None and not re.fullmatch(ID_PATTERN, conversation_id):
        raise ChatError("conversation_id: 1-64 letters, digits, '-' or '_'")
    cid = store.create_conversation(mode="file", conversation_id=conversation_id)
    name = store.conversation(cid).get("file_kb") or kb_name_for(cid)
    ttl = settings.file_chat_ttl_minutes * 60
    try:
        kb.get(name)
    except KBNotFound:
        kb.create(name, description=f"files of conversation {cid}", ttl_seconds=ttl)
    store.set_file_kb(cid, name)
    documents, errors = [], []
    for filename, data in files:
        try:
            doc = kb.add_bytes(name, filename, data)
        except KBError as e:
            errors.append({"filename": filename, "error": str(e)})
            continue
        documents.append({"id": doc.id, "path": doc.path, "status": doc.status, "error": doc.error,
                          "chunks": doc.chunk_count})
    return {"conversation_id": cid, "kb": name, "documents": documents, "errors": errors,
            "expires_in_s": ttl}


async def run(turn: Turn) -> AsyncIterator[ChatEvent]:
    name = turn.file_kb
    if not name:
        raise ChatError("file chat needs files: upload them first (POST /api/chat/files) and pass the "
                        "conversation_id it returns")
    try:
        info = await asyncio.to_thread(turn.kb.get, name)
    except KBNotFound as e:
        raise FilesExpired(EXPIRED.format(ttl=turn.settings.file_chat_ttl_minutes)) from e
    if info.expires_at is not None and info.expires_at <= time.time():
        await asyncio.to_thread(turn.kb.expire_temporary)
        raise FilesExpired(EXPIRED.format(ttl=turn.settings.file_chat_ttl_minutes))
    async for event in kb_chat.answer_from(turn, name):
        yield event
