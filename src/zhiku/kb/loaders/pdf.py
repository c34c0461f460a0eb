"""PDF, page by page with pypdf. A page without a text layer is rendered with pdfium and read by OCR (when
OCR is on); pages that have text are never OCR-ed, nor are the images inside them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pypdf import PdfReader
from pypdf.errors import PdfReadError

from . import ocr
from .base import LoadedDoc, LoaderError, Section

# Past this many, page warnings of one kind are summarised in one line rather than listed one by one.
_MAX_PAGE_WARNINGS = 20
# Scans are rendered at most at 200 dpi (12 pt text is then 33 px high, plenty for the recogniser, and a
# page costs 2.2x fewer pixels than at 300 dpi), and no finer than the page's largest picture, down to
# 150 dpi: finer than the scan adds pixels, not detail. Never past image.MAX_PIXELS.
RENDER_DPI = 200
MIN_RENDER_DPI = 150


def render_scale(page: Any) -> float:
    """Pixels per PDF point for rendering this pdfium page for OCR."""
    import pypdfium2.raw as pdfium_c

    from .image import MAX_PIXELS

    native = 0.0
    for obj in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,), max_depth=2):
        left, bottom, right, top = obj.get_bounds()
        px_w, px_h = obj.get_px_size()
        native = max(native, px_w / max(right - left, 1.0), px_h / max(top - bottom, 1.0))
    scale = min(RENDER_DPI / 72, max(MIN_RENDER_DPI / 72, native)) if native else RENDER_DPI / 72
    w, h = page.get_size()
    return min(scale, (MAX_PIXELS / max(w * h, 1.0)) ** 0.5)


def _listed(numbers: list[int], what: str, more: str) -> list[str]:
    lines = [f"page {n}: {what}" for n in numbers[:_MAX_PAGE_WARNINGS]]
    if len(numbers) > _MAX_PAGE_WARNINGS:
        lines.append(f"{len(numbers) - _MAX_PAGE_WARNINGS} more pages {more}")
    return lines


def _rendered(path: Path, numbers: list[int], failed: dict[int, str]) -> Iterator[bytes]:
    """Each page rendered to image bytes, in order; a page pdfium cannot render yields b"" (its reason in
    `failed`). pdfium is not thread-safe, so rendering stays in the calling thread."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as e:
        for n in numbers:
            failed[n] = f"could not be rendered for OCR ({e})"
            yield b""
        return
    try:
        for n in numbers:
            try:
                page = pdf[n - 1]
                image = page.render(scale=render_scale(page), grayscale=True).to_pil()
                page.close()
            except (pdfium.PdfiumError, ValueError, MemoryError) as e:
                failed[n] = f"could not be rendered for OCR ({e})"
                yield b""
                continue
            yield ocr.encode(image)
    finally:
        pdf.close()


def _ocr(path: Path, empty: list[int]) -> tuple[list[Section], list[str]]:
    """Read the text-less pages by OCR, up to the page cap; warnings say which pages were read and which not."""
    cap = ocr.options().max_pages
    todo, skipped = empty[:cap], empty[cap:]
    failed: dict[int, str] = {}
    texts = ocr.read_pages(_rendered(path, todo, failed), len(todo))
    sections: list[Section] = []
    read: list[int] = []
    blank: list[int] = []
    for n, text in zip(todo, texts, strict=True):
        if isinstance(text, LoaderError):
            failed[n] = str(text)
        elif n in failed:
            continue
        elif text.strip():
            sections.append(Section(text, page=n))
            read.append(n)
        else:
            blank.append(n)
    warnings = (_listed(read, "read by OCR", "read by OCR")
                + _listed(blank, "no text, OCR found none", "with no text, OCR found none")
                + [f"page {n}: {why}" for n, why in sorted(failed.items())[:_MAX_PAGE_WARNINGS]])
    if skipped:
        warnings.append(f"{len(skipped)} pages without text not read: over the OCR cap of {cap} pages "
                        f"(ocr_max_pages), from page {skipped[0]}")
    return sections, warnings


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
    warnings = broken[:_MAX_PAGE_WARNINGS]
    if empty and ocr.options().enabled:
        read, ocr_warnings = _ocr(path, empty)
        sections = sorted(sections + read, key=lambda s: s.page or 0)
        warnings += ocr_warnings
        if not sections and not broken:
            raise LoaderError(f"PDF has no text layer on any of its {count} pages and OCR found no text "
                              f"({'; '.join(ocr_warnings[:3])})")
    else:
        warnings += _listed(empty, "no text — scanned?", "with no text — scanned?")
        if not sections and not broken:
            raise LoaderError(f"PDF has no text layer on any of its {count} pages — scanned? (OCR is off)")
    if not sections and broken:
        raise LoaderError(f"corrupt PDF: {broken[0]}")
    return LoadedDoc("pdf", sections, warnings)
