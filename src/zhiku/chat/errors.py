"""Errors the chat layer turns into an `error` event with the message shown as is."""


class ChatError(Exception):
    def __init__(self, message: str, code: str = "bad_request") -> None:
        super().__init__(message)
        self.code = code


class ConversationNotFound(ChatError):
    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"conversation {conversation_id} not found", "not_found")


class MessageNotFound(ChatError):
    def __init__(self, message_id: str) -> None:
        super().__init__(f"message {message_id} not found", "not_found")
