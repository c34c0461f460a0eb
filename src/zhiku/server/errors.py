"""Placeholder: OpenAI-shaped errors, filled in by its owner."""

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    return None
