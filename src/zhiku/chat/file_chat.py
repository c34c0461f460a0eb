"""File chat: uploads go into a temporary knowledge base tied to the conversation, then KB QA over it.

Uploads are two-phase like every ingestion: `upload` answers once the files are searchable (full text), and
their vectors follow from the background embedding worker (kb/embedding.py, run by the server; it serves
temporary bases like any other and drops an expired one's queue with the base). A question asked right
after an upload is what a user does, so it is answered at once from what is ready: BM25 over every chunk
fused with dense over the embedded ones (kb/service.py weighs dense by the embedded share).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from zhiku.chat import kb_chat
from zhiku.chat.errors import ChatError, ConversationNotFound, FilesExpired
from zhiku.chat.history import HistoryStore
from zhiku.chat.turn import KB, Turn
from zhiku.chat.types import ID_PATTERN, ChatEvent
from zhiku.config import Settings
from zhiku.kb.types import KBError, KBInfo, KBNotFound

PREFIX = "file-chat-"
EXPIRED = "the files uploaded to this conversation have expired (after {ttl:g} minutes); upload them again"


def kb_name_for(conversation_id: str) -> str:
    return PREFIX + conversation_id[:40]


def upload(settings: Settings, store: HistoryStore, kb: KB, files: list[tuple[str, bytes]],
           conversation_id: str | None = None) -> dict[str, Any]:
    """Add files to the conversation's temporary knowledge base (created on first upload). Blocking until
    they are searchable; `embedding` says how far their vectors are ("embedding 12 / 40 chunks" or
    "embedded")."""
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
            doc = kb.add_bytes(name, filename, data, wait=False)
        except KBError as e:
            errors.append({"filename": filename, "error": str(e)})
            continue
        documents.append({"id": doc.id, "path": doc.path, "status": doc.status, "error": doc.error,
                          "chunks": doc.chunk_count})
    info = kb.get(name)
    return {"conversation_id": cid, "kb": name, "documents": documents, "errors": errors,
            "expires_in_s": ttl, "chunks": info.chunks, "embedded_chunks": info.embedded_chunks,
            "embedding": info.embedding}


def status(store: HistoryStore, kb: KB, conversation_id: str) -> KBInfo | None:
    """The conversation's uploads (their temporary base: chunks, how many embedded), or None when it has
    none or they expired."""
    try:
        name = store.conversation(conversation_id).get("file_kb")
    except ConversationNotFound:
        return None
    if not name:
        return None
    try:
        return kb.get(name)
    except KBNotFound:
        return None


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
