"""Prompt templates (an editable TOML file), language choice, and fitting passages into the context window."""

from __future__ import annotations

import re
import shutil
import threading
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from zhiku.chat.errors import ChatError
from zhiku.cjk import HAN_CHAR
from zhiku.errors import log

FILE_NAME = "prompts.toml"
LANGUAGES = ("zh", "en")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_LETTER = re.compile(r"[A-Za-z]")


def detect_language(text: str) -> str:
    """'zh' when Chinese characters make up a fair share of the letters, else 'en'."""
    cjk = len(HAN_CHAR.findall(text))
    latin_words = len(re.findall(r"[A-Za-z]+", text))
    return "zh" if cjk and cjk >= latin_words * 0.5 else "en"


def render(template: str, values: dict[str, str]) -> str:
    """Fill {{ name }} placeholders. Values are inserted verbatim (no re-expansion), unknown names stay."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


@dataclass(frozen=True)
class Template:
    mode: str
    name: str
    language: str | None
    system: str
    user: str

    def messages(self, history: list[dict[str, Any]], values: dict[str, str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.system.strip():
            out.append({"role": "system", "content": render(self.system, values)})
        out.extend(history)
        out.append({"role": "user", "content": render(self.user, values)})
        return out


def default_text() -> str:
    return resources.files("zhiku.chat").joinpath(FILE_NAME).read_text(encoding="utf-8")


class PromptStore:
    """Templates from $ZHIKU_HOME/prompts.toml over the packaged defaults; re-read when the file changes."""

    def __init__(self, home: Path) -> None:
        self.path = home / FILE_NAME
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._defaults: dict[str, Any] = tomllib.loads(default_text())
        self._data: dict[str, Any] = self._defaults

    def ensure_file(self) -> Path:
        """Copy the packaged defaults to the data folder on first use, so the user can edit them. The copy
        is whole or absent (a full disk must not leave a truncated file that no longer parses)."""
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{FILE_NAME}.{threading.get_ident()}.tmp")
            try:
                with resources.as_file(resources.files("zhiku.chat").joinpath(FILE_NAME)) as src:
                    shutil.copyfile(src, tmp)
                tmp.replace(self.path)
            finally:
                tmp.unlink(missing_ok=True)
        return self.path

    def _load(self) -> dict[str, Any]:
        try:
            self.ensure_file()
        except OSError as e:  # a full or read-only disk: answer with the packaged templates, copy them later
            if not self.path.exists():
                log.warning("cannot copy the prompt templates to %s (%s); using the packaged ones", self.path, e)
                return self._defaults
        with self._lock:
            mtime = self.path.stat().st_mtime
            if mtime != self._mtime:
                try:
                    user = tomllib.loads(self.path.read_text(encoding="utf-8"))
                except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
                    raise ChatError(f"{self.path} is not valid TOML: {e}") from e
                merged = {mode: dict(names) for mode, names in self._defaults.items()}
                for mode, names in user.items():
                    if isinstance(names, dict):
                        merged.setdefault(mode, {}).update(names)
                self._data, self._mtime = merged, mtime
            return self._data

    def names(self) -> dict[str, list[str]]:
        """Template names per mode."""
        return {mode: sorted(names) for mode, names in self._load().items() if isinstance(names, dict)}

    def get(self, mode: str, name: str | None, language: str) -> Template:
        name = name or "default"
        section = self._load().get(mode, {})
        entry = section.get(name)
        if not isinstance(entry, dict):
            raise ChatError(f"no prompt template '{name}' for mode '{mode}' in {self.path}; "
                            f"available: {', '.join(sorted(section)) or 'none'}")
        chosen_language: str | None = None
        if "user" not in entry:  # language variants
            for lang in (language, *LANGUAGES, *entry):
                if isinstance(entry.get(lang), dict):
                    chosen_language, entry = lang, entry[lang]
                    break
        user = entry.get("user")
        if not isinstance(user, str):
            raise ChatError(f"prompt template {mode}.{name} in {self.path} has no 'user' text")
        system = entry.get("system", "")
        return Template(mode, name, chosen_language, system if isinstance(system, str) else "", user)


def choose_language(requested: str | None, configured: str, question: str) -> str:
    for choice in (requested, configured):
        if choice in LANGUAGES:
            return choice
    return detect_language(question)


def fit_passages(
    build: Callable[[str], list[dict[str, Any]]],
    passages: list[str],
    count_chat_tokens: Callable[[list[dict[str, Any]]], int],
    count_tokens: Callable[[str], int],
    budget: int,
    min_passage_tokens: int = 32,
) -> tuple[list[dict[str, Any]], int]:
    """Messages holding as many passages (in order) as fit in `budget` prompt tokens.

    `build(context)` makes the messages for a context string; the question is part of them and is
    never cut. Passages that do not fit are dropped; the first one that only partly fits is trimmed
    (if at least `min_passage_tokens` remain). Returns the messages and how many passages were used.
    """
    base = count_chat_tokens(build(""))
    room = budget - base
    used: list[str] = []
    for passage in passages:
        if room <= 0:
            break
        cost = count_tokens(passage + "\n\n")
        if cost <= room:
            used.append(passage)
            room -= cost
            continue
        if room >= min_passage_tokens:
            trimmed = _trim_to(passage, room, count_tokens)
            if trimmed:
                used.append(trimmed)
        break
    messages = build("\n\n".join(used))
    # Token counts of joined text can differ slightly from the sum of parts: shed passages until it fits.
    while used and count_chat_tokens(messages) > budget:
        used.pop()
        messages = build("\n\n".join(used))
    return messages, len(used)


def _trim_to(text: str, tokens: int, count_tokens: Callable[[str], int]) -> str:
    """The longest prefix of `text` (plus an ellipsis) within `tokens`, found by bisection on characters."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(text[:mid] + "…\n\n") <= tokens:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + "…" if lo else ""
