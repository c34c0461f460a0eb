"""PDF, page by page with pypdf. A page without a text layer is reported, never silently empty."""

from __future__ import annotations

from pathlib import Path

from pypdf import PdfReader
from pypdf.errors import PdfReadError

from .base import LoadedDoc, LoaderError, Section

# Past this many, empty pages are summarised in one warning rather than listed one by one.
_MAX_PAGE_WARNINGS = 20


def load_pdf(path: Path) -> LoadedDoc:
    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoaderError("encrypted PDF: it needs a password")
        pages = reader.pages
        count = len(pages)
    except LoaderError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as e:
        raise LoaderError(f"corrupt PDF: {e}") from e
    if count == 0:
        raise LoaderError("corrupt PDF: no pages")
    sections: list[Section] = []
    empty: list[int] = []
    broken: list[str] = []
    for number, page in enumerate(pages, start=1):
        try:
            text = (page.extract_text() or "").strip()
        except Exception as e:  # one damaged page must not cost the rest of the document
            broken.append(f"page {number}: unreadable ({type(e).__name__}: {e})")
            continue
        if text:
            sections.append(Section(text, page=number))
        else:
            empty.append(number)
    if not sections and broken:
        raise LoaderError(f"corrupt PDF: {broken[0]}")
    if not sections:
        raise LoaderError(f"PDF has no text layer on any of its {count} pages — scanned? (no OCR here)")
    warnings = broken[:_MAX_PAGE_WARNINGS] + [f"page {n}: no text — scanned?" for n in empty[:_MAX_PAGE_WARNINGS]]
    if len(empty) > _MAX_PAGE_WARNINGS:
        warnings.append(f"{len(empty) - _MAX_PAGE_WARNINGS} more pages with no text — scanned?")
    return LoadedDoc("pdf", sections, warnings)
