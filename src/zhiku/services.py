"""The service layer, built once per process and shared by the HTTP routes, the web UI and the CLI.

Services know nothing about HTTP. Each is created on first use, so a CLI command that only needs the
knowledge bases never loads the LLM.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from zhiku.config import Settings

if TYPE_CHECKING:
    from zhiku.chat.service import ChatService
    from zhiku.kb.service import KBService
    from zhiku.llm.service import LLMService


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def llm(self) -> LLMService:
        from zhiku.llm.service import LLMService

        return LLMService(self.settings)

    @cached_property
    def kb(self) -> KBService:
        from zhiku.kb.service import KBService

        return KBService(self.settings)

    @cached_property
    def chat(self) -> ChatService:
        from zhiku.chat.service import ChatService

        return ChatService(self.settings, self.llm, self.kb)

    def close(self) -> None:
        for name in ("chat", "kb", "llm"):
            service = self.__dict__.get(name)
            if service is not None:
                service.close()
