"""Errors of the chat layer; like every user-facing error they carry a kind and a stable code (zhiku.errors)."""

from __future__ import annotations

from zhiku.errors import ErrorKind, ZhikuError


class ChatError(ZhikuError):
    """A question the chat layer refuses (no knowledge base given, unknown template, ...)."""

    kind: ErrorKind = "invalid_request"
    code = "bad_request"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message, code=code)


class ConversationNotFound(ChatError):
    kind: ErrorKind = "not_found"
    code = "conversation_not_found"

    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"conversation {conversation_id} not found")


class MessageNotFound(ChatError):
    kind: ErrorKind = "not_found"
    code = "message_not_found"

    def __init__(self, message_id: str) -> None:
        super().__init__(f"message {message_id} not found")


class FilesExpired(ChatError):
    """The files uploaded for file chat are gone (their temporary knowledge base expired)."""

    kind: ErrorKind = "not_found"
    code = "files_expired"
