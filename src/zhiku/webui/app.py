"""The Gradio web UI, mounted into the same FastAPI app at "/".

The pages call the service layer directly (no HTTP round trip to ourselves). Offline by construction:
analytics off, no share link, bundled or system fonts only, no run history stored in the browser.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read by gradio at import and Blocks() time
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402
from fastapi import FastAPI, HTTPException, Request  # noqa: E402
from fastapi.responses import FileResponse  # noqa: E402
from starlette.routing import Mount  # noqa: E402

from zhiku.kb.types import KBError  # noqa: E402
from zhiku.limits import Limits  # noqa: E402
from zhiku.services import Services  # noqa: E402
from zhiku.webui import chat_page, kb_page, status_page  # noqa: E402
from zhiku.webui.chat_page import DOWNLOAD_ROUTE  # noqa: E402
from zhiku.webui.context import UI  # noqa: E402
from zhiku.webui.i18n import STRINGS, translations  # noqa: E402

SYSTEM_FONTS = ["system-ui", "-apple-system", "Segoe UI", "PingFang SC", "Hiragino Sans GB", "Microsoft YaHei",
                "Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Noto Sans Mono CJK SC", "monospace"]

CSS = """
#zhiku-header h1 { margin-bottom: 0; }
#zhiku-header p { margin-top: 0; opacity: .7; }
#chatbot .zk-sources-title { font-weight: 600; margin: 1em 0 .2em; border-top: 1px solid var(--border-color-primary);
  padding-top: .5em; }
#chatbot .zk-sources-title ~ ol { font-size: .9em; margin-top: 0; }
#chatbot .zk-sources-title ~ ol blockquote { font-size: .92em; opacity: .75; margin: .1em 0 .3em; padding: 0 .6em; }
"""


def theme() -> gr.themes.Base:
    """Gradio's default look with the fonts it bundles plus system fonts (CJK included): nothing from a CDN."""
    return gr.themes.Default(font=[gr.themes.LocalFont("Source Sans Pro"), *SYSTEM_FONTS],
                             font_mono=[gr.themes.LocalFont("IBM Plex Mono"), *MONO_FONTS])


def build_blocks(services: Services) -> tuple[gr.Blocks, gr.I18n]:
    i18n = gr.I18n(**translations(services.settings.language))
    ui = UI(services, i18n)
    with gr.Blocks(title="知库 zhiku", analytics_enabled=False) as blocks:
        with gr.Column(elem_id="zhiku-header"):
            gr.Markdown(ui.label("title"))
            gr.Markdown(ui.label("subtitle"))
        with gr.Tabs(elem_id="zhiku-tabs"):
            with gr.Tab(ui.label("tab_chat"), id="chat", elem_id="tab-chat") as chat_tab:
                chat = chat_page.build(ui)
            with gr.Tab(ui.label("tab_kb"), id="kb", elem_id="tab-kb") as kb_tab:
                kb = kb_page.build(ui)
            with gr.Tab(ui.label("tab_status"), id="status", elem_id="tab-status") as status_tab:
                status = status_page.build(ui)

        def refresh_chat_kbs(current: str | None) -> Any:
            names = kb_page.kb_choices(ui)
            return gr.update(choices=names, value=current if current in names else (names[0] if names else None))

        for fn, inputs, outputs in (chat["load"], kb["refresh"], status["refresh"]):
            blocks.load(fn, inputs, outputs)
        chat_tab.select(refresh_chat_kbs, [chat["kb"]], [chat["kb"]])
        kb_tab.select(*kb["refresh"])
        status_tab.select(*status["refresh"])
    return blocks, i18n


def _ui_session_ok(gradio_app: Any, request: Request) -> bool:
    """True when the UI needs no login, or the request carries a live Gradio login cookie."""
    if gradio_app is None or gradio_app.auth is None:
        return gradio_app is not None
    cookie_id = gradio_app.cookie_id
    token = (request.cookies.get(f"access-token-{cookie_id}")
             or request.cookies.get(f"access-token-unsecure-{cookie_id}"))
    return token is not None and gradio_app.tokens.get(token) is not None


def mount_ui(app: FastAPI, services: Services, password: Callable[[str], bool] | None = None) -> Mount:
    """Mount the UI at "/" (with a login page when `password` checks one) and return its mount: the composition
    root wraps it so that the server's own paths stay the server's."""
    settings = services.settings
    blocks, i18n = build_blocks(services)
    holder: dict[str, Any] = {}

    # Sources link here rather than to /api/.../download: /api needs a bearer key the browser does not
    # have, and serving originals through Gradio's file route would show uploaded HTML inline (XSS).
    @app.get(DOWNLOAD_ROUTE + "/{kb}/{doc_id}", include_in_schema=False)
    def download(kb: str, doc_id: int, request: Request) -> FileResponse:
        if not _ui_session_ok(holder.get("gradio"), request):
            raise HTTPException(401, "log in to the web UI first")
        try:
            doc = services.kb.document(kb, doc_id)
            path = services.kb.document_path(kb, doc_id)
        except KBError as e:
            raise HTTPException(404, str(e)) from e
        return FileResponse(path, filename=Path(doc.path).name, media_type="application/octet-stream",
                            content_disposition_type="attachment")

    auth = None if password is None else (lambda _user, key: password(key))  # the user name is not used
    gr.mount_gradio_app(
        app, blocks, path="/", i18n=i18n, theme=theme(), css=CSS, footer_links=["settings"], run_history=False,
        auth=auth, auth_message=STRINGS["auth_message"][0] if auth else None, show_error=True,
        max_file_size=Limits.from_settings(settings).max_file_bytes, ssr_mode=False, mcp_server=False, pwa=False,
        enable_monitoring=False)
    mount = app.router.routes[-1]
    assert isinstance(mount, Mount) and mount.path == "", "Gradio should be the last route, mounted at /"
    holder["gradio"] = mount.app
    return mount
