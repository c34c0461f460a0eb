"""What every page builder needs: the services, the settings, the language of a request, error handling."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import gradio as gr
from pydantic import ValidationError

from zhiku.config import Settings
from zhiku.errors import ZhikuError
from zhiku.services import Services
from zhiku.webui.i18n import PREFIX, Lang, pick

F = TypeVar("F", bound=Callable[..., Any])


class UserError(Exception):
    """A request the UI refuses (nothing picked, empty input); the message is already translated."""


# Errors whose message is meant for the user: shown as a warning toast, the page stays as it was.
EXPECTED = (UserError, ZhikuError, ValidationError)


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


def guarded(outputs: int) -> Callable[[F], F]:
    """Turn an expected error into a warning toast and leave the handler's `outputs` unchanged.

    Raising gr.Error would instead mark every output component with an error badge.
    functools.wraps keeps the signature and annotations Gradio reads to inject gr.Request / gr.Progress.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except EXPECTED as e:
                gr.Warning(str(e))
                return gr.update() if outputs == 1 else tuple(gr.update() for _ in range(outputs))

        return wrapper  # type: ignore[return-value]

    return decorate


def bind(listener: Callable[..., Any], fn: Callable[..., Any], inputs: list[Any] | None, outputs: list[Any],
         **kwargs: Any) -> Any:
    """Attach `fn` to an event listener (e.g. `button.click`), guarded for exactly its outputs."""
    return listener(guarded(len(outputs))(fn), inputs, outputs, **kwargs)


def table(headers: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    """A Dataframe value with its (translated) headers; an empty table still shows them."""
    return {"headers": headers, "data": rows or [["" for _ in headers]]}
