"""ChatService: every dialogue mode as one stream of typed events, plus conversations and feedback.

The HTTP routes, the web UI and the CLI all call `stream()` (or `answer()` for one JSON); no logic
lives in the routes. Storage is crash-safe: the question is stored when asked, the answer only once
complete, each in its own transaction.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from zhiku.chat import agent, file_chat, kb_chat, llm_chat, search_chat
from zhiku.chat.errors import ConversationNotFound
from zhiku.chat.escalation import StrongModel
from zhiku.chat.history import HistoryStore, pair_turns
from zhiku.chat.prompts import PromptStore
from zhiku.chat.schema import HISTORY
from zhiku.chat.turn import KB, LLM, Turn
from zhiku.chat.types import ChatEvent, ChatRequest, ChatResult, closing, error
from zhiku.config import Settings
from zhiku.db import open_database
from zhiku.errors import ZhikuError, as_error
from zhiku.kb.types import KBInfo, KBNotFound
from zhiku.search_engines import SearchProvider, get_provider

__all__ = ["ChatEvent", "ChatRequest", "ChatResult", "ChatService"]

log = logging.getLogger(__name__)


class ChatService:
    def __init__(self, settings: Settings, llm: LLM, kb: KB) -> None:
        self.settings = settings
        self.llm = llm
        self.kb = kb
        self.store = HistoryStore(open_database(settings, HISTORY))
        self.prompts = PromptStore(settings.home)
        self.strong = StrongModel(settings)  # the stronger pack a KB answer may escalate to (loaded on need)
        # Replaceable so a caller (or a test) can plug in another provider; the default follows settings.
        self.search_provider: Callable[[str | None], SearchProvider] = lambda name: get_provider(settings, name)
        self._stop = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="zhiku-file-chat-expiry", daemon=True)
        self._sweeper.start()

    # answering -------------------------------------------------------------------------------------------

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatEvent]:
        """The answer as events: sources / tool_call / tool_result / delta ..., then done, or error."""
        turn = Turn(request, self.settings, self.llm, self.kb, self.prompts)
        if request.mode in ("kb", "file"):
            turn.strong = self.strong.get()
        result = ChatResult()
        try:
            cid = await asyncio.to_thread(self._prepare, turn)
            async with closing(self._run_mode(turn)) as events:
                async for event in events:
                    if event.type == "delta":
                        turn.note_output()
                    result.add(event)
                    yield event
            timings, usage = turn.final_timings(), turn.usage_dict()
            mid = None
            if cid is not None:
                mid = await asyncio.to_thread(
                    self.store.add_message, cid, "assistant", result.answer, request.mode, result.sources,
                    result.tool_calls, usage, timings, self._model_name(request))
            yield ChatEvent("done", {"conversation_id": cid, "message_id": mid, "usage": usage, "timings": timings,
                                     "finish_reason": turn.finish_reason or "stop", "mode": request.mode,
                                     "llm_calls": turn.llm_calls})
        except Exception as e:  # the stream must end with an event the client understands
            yield error(as_error(e))

    async def answer(self, request: ChatRequest) -> ChatResult:
        """The same answer as one object (the non-streaming response); a failure is raised as its error."""
        result = ChatResult()
        async with closing(self.stream(request)) as events:
            async for event in events:
                if event.type == "error":
                    raise event.exception()
                result.add(event)
        return result

    def _prepare(self, turn: Turn) -> str | None:
        """Conversation, history and stored question (blocking; runs on a worker thread)."""
        request = turn.request
        turns = self.settings.history_turns if request.history_turns is None else request.history_turns
        cid = request.conversation_id
        known = False
        if cid is not None:
            try:
                turn.file_kb = self.store.conversation(cid).get("file_kb")
                known = True
            except ConversationNotFound:
                known = False
        if request.history is not None:
            turn.history = pair_turns([m.model_dump() for m in request.history], turns)
        elif known and cid is not None:
            turn.history = self.store.recent_turns(cid, turns)
        if not request.save:
            return None
        cid = self.store.ensure_conversation(cid, request.mode, request.query)
        self.store.add_message(cid, "user", request.query, request.mode)
        return cid

    def _run_mode(self, turn: Turn) -> AsyncIterator[ChatEvent]:
        mode = turn.request.mode
        if mode == "llm":
            return llm_chat.run(turn)
        if mode == "kb":
            return kb_chat.run(turn)
        if mode == "file":
            return file_chat.run(turn)
        if mode == "search":
            return search_chat.run(turn, self.search_provider(turn.request.search_engine))
        return agent.run(turn)

    def _model_name(self, request: ChatRequest) -> str:
        if request.model:
            return request.model
        try:
            return self.llm.model_id
        except Exception:
            return ""

    # conversations and feedback --------------------------------------------------------------------------

    def list_conversations(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        return self.store.list_conversations(limit, offset)

    def get_conversation(self, conversation_id: str) -> dict[str, Any]:
        return self.store.get_conversation(conversation_id)

    def rename_conversation(self, conversation_id: str, title: str) -> None:
        self.store.rename_conversation(conversation_id, title)

    def delete_conversation(self, conversation_id: str) -> None:
        """Delete the conversation, and its uploaded files' temporary knowledge base."""
        file_kb = self.store.delete_conversation(conversation_id)
        if file_kb:
            try:
                self.kb.delete(file_kb)
            except KBNotFound:
                pass

    def add_feedback(self, message_id: str, score: int, reason: str = "") -> None:
        self.store.add_feedback(message_id, score, reason)

    def export_markdown(self, conversation_id: str) -> str:
        return self.store.export_markdown(conversation_id)

    # file chat -------------------------------------------------------------------------------------------

    def upload_files(self, files: list[tuple[str, bytes]], conversation_id: str | None = None) -> dict[str, Any]:
        """Files for file chat: into the conversation's temporary knowledge base (blocking until they are
        searchable; their vectors follow in the background)."""
        return file_chat.upload(self.settings, self.store, self.kb, files, conversation_id)

    def file_status(self, conversation_id: str) -> KBInfo | None:
        """The conversation's uploaded files as a knowledge base (chunks, how many embedded), if any."""
        return file_chat.status(self.store, self.kb, conversation_id)

    def cleanup_expired(self) -> list[str]:
        """Delete expired temporary knowledge bases now; returns their names."""
        return self.kb.expire_temporary()

    def _sweep_loop(self) -> None:
        interval = min(60.0, max(1.0, self.settings.file_chat_ttl_minutes * 60 / 4))
        while not self._stop.wait(interval):
            try:
                removed = self.cleanup_expired()
                if removed:
                    log.info("removed expired file-chat knowledge bases: %s", ", ".join(removed))
            except ZhikuError as e:  # the database is down, the disk full: one line; the next round may succeed
                log.warning("expiring temporary knowledge bases failed: %s", e.message)
            except Exception:  # a bug: its traceback; keep sweeping
                log.exception("expiring temporary knowledge bases failed")

    # templates -------------------------------------------------------------------------------------------

    def templates(self) -> dict[str, Any]:
        """Template names per mode, and the file they are edited in."""
        return {"file": str(self.prompts.ensure_file()), "templates": self.prompts.names()}

    def close(self) -> None:
        self._stop.set()
        if self._sweeper.is_alive() and self._sweeper is not threading.current_thread():
            self._sweeper.join(timeout=5)
        self.store.close()
        self.strong.close()

