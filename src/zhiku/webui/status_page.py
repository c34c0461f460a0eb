"""The status page: the model and its settings, load, requests and tokens served, knowledge bases, version."""

from __future__ import annotations

from typing import Any

import gradio as gr

from zhiku import __version__
from zhiku.webui import render
from zhiku.webui.context import UI


def status(ui: UI, request: gr.Request | None) -> str:
    lang = ui.lang(request)
    stats: dict[str, Any] | None
    error = None
    try:
        stats = ui.services.llm.stats()
    except Exception as e:  # the page must still show the rest when the model failed to load
        stats, error = None, str(e)
    kbs = ui.services.kb.list()
    sizes = {k.name: sum(d.size for d in ui.services.kb.documents(k.name)) for k in kbs}
    return render.status_markdown(stats, error, kbs, __version__, ui.settings, lang, sizes)


def build(ui: UI) -> dict[str, Any]:
    text = gr.Markdown(elem_id="status-text")
    refresh = gr.Button(ui.label("refresh_status"), size="sm", elem_id="status-refresh")

    def on_refresh(request: gr.Request) -> str:
        return status(ui, request)

    refresh.click(on_refresh, None, [text], concurrency_limit=None)
    return {"refresh": (on_refresh, None, [text])}
