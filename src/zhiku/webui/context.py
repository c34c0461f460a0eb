"""What every page builder needs: the services, the settings, and the language of a request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from zhiku.config import Settings
from zhiku.services import Services
from zhiku.webui.i18n import PREFIX, Lang, pick, t


@dataclass
class UI:
    services: Services
    i18n: gr.I18n

    @property
    def settings(self) -> Settings:
        return self.services.settings

    def lang(self, request: gr.Request | None) -> Lang:
        header = request.headers.get("accept-language") if request is not None else None
        return pick(header, self.settings.language)

    def label(self, key: str) -> Any:
        """A static label, translated in the browser."""
        return self.i18n(PREFIX + key)


def table(headers: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    """A Dataframe value with its (translated) headers; an empty table still shows them."""
    return {"headers": headers, "data": rows or [["" for _ in headers]]}


def message(lang: Lang, key: str, **kwargs: object) -> str:
    return t(lang, key, **kwargs)
