"""PDF, page by page with pypdf. A page without a text layer is rendered with pdfium and read by OCR (when
OCR is on); on a page that has text, its large pictures are read by OCR (setting `ocr_pictures`) and their
text added unless the text layer already holds it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pypdf import PdfReader
from pypdf.errors import PdfReadError

from . import ocr, pdf_pictures
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


# One image to OCR: a whole text-less page (None) or the i-th large picture of a page that has text.
Job = tuple[int, int | None]


def _images(path: Path, jobs: list[Job], failed: dict[int, str]) -> Iterator[bytes]:
    """Each job's image as bytes for the engine, in order; one pdfium cannot produce yields b"" (its reason
    in `failed`, by job index). pdfium is not thread-safe, so this stays in the calling thread."""
    import pypdfium2 as pdfium

    from .image import MAX_PIXELS

    try:
        pdf = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as e:
        for k, _ in enumerate(jobs):
            failed[k] = f"could not be rendered for OCR ({e})"
            yield b""
        return
    try:
        for k, (n, picture) in enumerate(jobs):
            try:
                page = pdf[n - 1]
                if picture is None:
                    image = page.render(scale=render_scale(page), grayscale=True).to_pil()
                else:
                    image = pdf_pictures.picture_image(pdf_pictures.large_pictures(page)[picture], MAX_PIXELS)
                page.close()
            except (pdfium.PdfiumError, ValueError, MemoryError, IndexError) as e:
                failed[k] = f"could not be rendered for OCR ({e})"
                yield b""
                continue
            yield ocr.encode(image)
    finally:
        pdf.close()


def _picture_jobs(path: Path, pages: list[int]) -> list[Job]:
    """One job per large picture of these pages (an unreadable file or page has none)."""
    import pypdfium2 as pdfium

    jobs: list[Job] = []
    try:
        pdf = pdfium.PdfDocument(path)
    except pdfium.PdfiumError:
        return jobs
    try:
        for n in pages:
            try:
                page = pdf[n - 1]
                jobs += [(n, i) for i in range(len(pdf_pictures.large_pictures(page)))]
                page.close()
            except (pdfium.PdfiumError, ValueError):
                continue
    finally:
        pdf.close()
    return jobs


def _ocr(path: Path, empty: list[int], pictured: list[int],
         layers: dict[int, Section]) -> tuple[list[Section], list[str]]:
    """Read the text-less pages, then the large pictures of `pictured` pages (their text appended to the
    page's section in `layers` unless that already holds it), by OCR up to the cap; warnings say which
    pages and pictures were read and which not."""
    cap = ocr.options().max_pages
    todo, skipped = empty[:cap], empty[cap:]
    pictures = _picture_jobs(path, pictured) if pictured else []
    jobs: list[Job] = [(n, None) for n in todo] + pictures[:cap - len(todo)]
    failed: dict[int, str] = {}
    texts = ocr.read_pages(_images(path, jobs, failed), len(jobs)) if jobs else []
    sections: list[Section] = []
    read: list[int] = []
    blank: list[int] = []
    seen: list[int] = []
    for k, ((n, picture), text) in enumerate(zip(jobs, texts, strict=True)):
        if isinstance(text, LoaderError):
            failed[k] = str(text)
        elif k in failed:
            continue
        elif picture is not None:
            if text.strip() and not pdf_pictures.held_by(text, layers[n].text):
                layers[n].text += "\n\n" + text
                seen += [] if n in seen else [n]
        elif text.strip():
            sections.append(Section(text, page=n))
            read.append(n)
        else:
            blank.append(n)
    warnings = (_listed(read, "read by OCR", "read by OCR")
                + _listed(blank, "no text, OCR found none", "with no text, OCR found none")
                + _listed(seen, "picture read by OCR", "with pictures read by OCR")
                + [f"page {jobs[k][0]}: {'picture ' if jobs[k][1] is not None else ''}{why}"
                   for k, why in sorted(failed.items())[:_MAX_PAGE_WARNINGS]])
    if skipped:
        warnings.append(f"{len(skipped)} pages without text not read: over the OCR cap of {cap} pages "
                        f"(ocr_max_pages), from page {skipped[0]}")
    if len(pictures) > len(jobs) - len(todo):
        left = pictures[len(jobs) - len(todo):]
        warnings.append(f"{len(left)} pictures on pages with text not read: over the OCR cap of {cap} pages "
                        f"(ocr_max_pages), from page {left[0][0]}")
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
    pictured: list[int] = []  # pages with text and a picture that may hold more
    broken: list[str] = []
    opts = ocr.options()
    for number, page in enumerate(pages, start=1):
        try:
            text = (page.extract_text() or "").strip()
        except Exception as e:  # one damaged page must not cost the rest of the document
            broken.append(f"page {number}: unreadable ({type(e).__name__}: {e})")
            continue
        if text:
            sections.append(Section(text, page=number))
            if opts.enabled and opts.pictures and pdf_pictures.has_pictures(page):
                pictured.append(number)
        else:
            empty.append(number)
    warnings = broken[:_MAX_PAGE_WARNINGS]
    if (empty or pictured) and opts.enabled:
        read, ocr_warnings = _ocr(path, empty, pictured, {s.page or 0: s for s in sections})
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
