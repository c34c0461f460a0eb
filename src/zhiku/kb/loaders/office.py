"""Word (.docx) and PowerPoint (.pptx) with python-docx and python-pptx."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph
from pptx import Presentation

from .base import LoadedDoc, Section

# Word stores built-in style names in English ("heading 1") whatever the UI language; custom Chinese
# templates often name them "标题 1".
_HEADING_STYLE = re.compile(r"^(?:heading|标题)\s*([1-9])$", re.IGNORECASE)
_TITLE_STYLES = {"title", "标题"}


def _heading_level(paragraph: Paragraph) -> int | None:
    style = paragraph.style
    name = (style.name or "").strip() if style is not None else ""
    m = _HEADING_STYLE.match(name)
    if m:
        return int(m.group(1))
    return 0 if name.lower() in _TITLE_STYLES else None


def _row_texts(cells: Iterable[Any]) -> str:
    """One table row as "a | b | c"; a merged cell is repeated by the libraries, so each one counts once."""
    seen: set[int] = set()
    parts: list[str] = []
    for cell in cells:
        key = id(getattr(cell, "_tc", cell))
        if key in seen:
            continue
        seen.add(key)
        text = " ".join(cell.text.split())
        if text:
            parts.append(text)
    return " | ".join(parts)


def load_docx(path: Path) -> LoadedDoc:
    document = docx.Document(str(path))
    sections: list[Section] = []
    trail: list[tuple[int, str]] = []
    lines: list[str] = []

    def flush() -> None:
        if lines:
            sections.append(Section("\n".join(lines), None, [t for _, t in trail]))
        lines.clear()

    for block in document.iter_inner_content():
        if isinstance(block, Table):
            lines.extend(t for t in (_row_texts(row.cells) for row in block.rows) if t)
            continue
        text = block.text.strip()
        if not text:
            continue
        level = _heading_level(block)
        if level is not None:
            flush()
            trail = [(lv, t) for lv, t in trail if lv < level] + [(level, text)]
        lines.append(text)
    flush()
    return LoadedDoc("docx", sections, [])


def _shapes(shapes: Iterable[Any]) -> Iterator[Any]:
    for shape in shapes:
        if hasattr(shape, "shapes"):  # a group: its members, in order
            yield from _shapes(shape.shapes)
        else:
            yield shape


def _shape_text(shape: Any) -> str:
    if getattr(shape, "has_table", False) and shape.has_table:
        return "\n".join(t for t in (_row_texts(row.cells) for row in shape.table.rows) if t)
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        return str(shape.text_frame.text).strip()
    return ""


def load_pptx(path: Path) -> LoadedDoc:
    presentation = Presentation(str(path))
    sections: list[Section] = []
    for number, slide in enumerate(presentation.slides, start=1):
        title_shape = slide.shapes.title
        title = " ".join(title_shape.text_frame.text.split()) if title_shape is not None else ""
        others = [s for s in _shapes(slide.shapes) if title_shape is None or s.shape_id != title_shape.shape_id]
        # Reading order: top to bottom, then left to right.
        others.sort(key=lambda s: (s.top or 0, s.left or 0))
        parts = [title] if title else []
        parts.extend(t for t in (_shape_text(s) for s in others) if t)
        if slide.has_notes_slide:
            frame = slide.notes_slide.notes_text_frame
            notes = frame.text.strip() if frame is not None else ""
            if notes:
                parts.append(notes)
        if parts:
            sections.append(Section("\n".join(parts), page=number, heading=[title] if title else []))
    return LoadedDoc("pptx", sections, [])
