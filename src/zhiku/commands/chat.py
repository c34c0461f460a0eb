"""Placeholder: zhiku ask (filled in by its owner)."""

from zhiku.commands.common import fail


def ask(question: str) -> None:
    """Ask a question (not yet built)."""
    fail("not built yet")
