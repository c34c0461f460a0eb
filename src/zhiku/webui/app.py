"""Placeholder: the Gradio UI, filled in by its owner."""

from fastapi import FastAPI

from zhiku.services import Services


def mount_ui(app: FastAPI, services: Services) -> None:
    return None
