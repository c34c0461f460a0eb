"""EPUB with ebooklib: the chapters in reading (spine) order, each one's HTML turned into sections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ebooklib
from ebooklib import epub

from .base import LoadedDoc, Section, decode_text
from .html import html_to_sections


def _toc_titles(toc: Any, out: dict[str, str]) -> dict[str, str]:
    """href (without #fragment) -> title, from the nested table of contents."""
    for entry in toc:
        if isinstance(entry, tuple | list) and len(entry) == 2:
            section, children = entry
            if getattr(section, "href", None) and getattr(section, "title", None):
                out.setdefault(section.href.split("#")[0], section.title)
            _toc_titles(children, out)
        elif getattr(entry, "href", None) and getattr(entry, "title", None):
            out.setdefault(entry.href.split("#")[0], entry.title)
    return out


def load_epub(path: Path) -> LoadedDoc:
    book = epub.read_epub(str(path), options={"ignore_ncx": True})
    titles = _toc_titles(book.toc, {})
    sections: list[Section] = []
    warnings: list[str] = []
    for idref, *_ in book.spine:
        item = book.get_item_with_id(idref)
        if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT:
            continue
        chapter = html_to_sections(decode_text(item.get_content(), warnings))
        title = titles.get(item.get_name())
        for s in chapter:
            # A chapter whose HTML has no heading of its own takes its title from the table of contents.
            if not s.heading and title:
                s.heading = [title]
        sections.extend(chapter)
    return LoadedDoc("epub", sections, sorted(set(warnings)))
