"""File suffix -> loader function, and `load`, the in-process entry point."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from . import ocr
from .base import LoadedDoc, LoaderError, non_empty

# suffix -> (module, function, what to call the file in an error message)
_LOADERS: dict[str, tuple[str, str, str]] = {
    ".txt": ("text", "load_txt", "text file"),
    ".md": ("text", "load_markdown", "Markdown file"),
    ".markdown": ("text", "load_markdown", "Markdown file"),
    ".rst": ("text", "load_rst", "reStructuredText file"),
    ".html": ("html", "load_html", "HTML page"),
    ".htm": ("html", "load_html", "HTML page"),
    ".pdf": ("pdf", "load_pdf", "PDF"),
    ".docx": ("office", "load_docx", "Word document (.docx)"),
    ".pptx": ("office", "load_pptx", "PowerPoint file (.pptx)"),
    ".xlsx": ("sheets", "load_xlsx", "Excel workbook (.xlsx)"),
    ".csv": ("sheets", "load_csv", "CSV file"),
    ".tsv": ("sheets", "load_tsv", "TSV file"),
    ".json": ("structured", "load_json", "JSON file"),
    ".jsonl": ("structured", "load_jsonl", "JSON Lines file"),
    ".epub": ("epub", "load_epub", "EPUB book"),
    ".eml": ("mail", "load_eml", "e-mail (.eml)"),
    ".png": ("image", "load_image", "PNG image"),
    ".jpg": ("image", "load_image", "JPEG image"),
    ".jpeg": ("image", "load_image", "JPEG image"),
    ".bmp": ("image", "load_image", "BMP image"),
    ".tif": ("image", "load_image", "TIFF image"),
    ".tiff": ("image", "load_image", "TIFF image"),
    ".webp": ("image", "load_image", "WebP image"),
}

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_LOADERS)
# Read as text: their bytes are checked for binary content (a renamed image) before decoding.
TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".rst", ".csv", ".tsv", ".json", ".jsonl", ".html", ".htm",
                           ".eml"})
# Every loader module, so that a process about to parse many files can import them all once up front.
LOADER_MODULES: tuple[str, ...] = tuple(sorted({f"{__package__}.{m}" for m, _, _ in _LOADERS.values()}))


def _loader(suffix: str) -> tuple[Callable[[Path], LoadedDoc], str]:
    entry = _LOADERS.get(suffix)
    if entry is None:
        raise LoaderError(f"unsupported file type {suffix or '(no extension)'}")
    module, function, kind = entry
    # Imported on first use: the parsing libraries cost about a second to import, and most runs need few.
    fn: Callable[[Path], LoadedDoc] = getattr(importlib.import_module(f".{module}", __package__), function)
    return fn, kind


def check_file(path: Path) -> None:
    """The cheap refusals, before any parsing: unknown type, missing or empty file."""
    _loader(path.suffix.lower())
    try:
        size = path.stat().st_size
    except FileNotFoundError as e:
        raise LoaderError(f"file not found: {path.name}") from e
    if not path.is_file():
        raise LoaderError(f"not a regular file: {path.name}")
    if size == 0:
        raise LoaderError("empty file")
    if path.suffix.lower() in TEXT_SUFFIXES:
        from .text import sniff_binary

        with path.open("rb") as f:
            reason = sniff_binary(f.read(8192))
        if reason:
            raise LoaderError(reason)


def load(path: Path, ocr_options: ocr.OcrOptions | None = None,
         pages: ocr.PageProgress | None = None) -> LoadedDoc:
    """Read one file in this process. Raises LoaderError with a reason fit for the user; never anything else
    for bad input (a library's own exception on a corrupt file is wrapped). `ocr_options` (default: OCR on)
    and the page-progress callback `pages` apply to scanned PDF pages and images."""
    path = Path(path)
    check_file(path)
    fn, kind = _loader(path.suffix.lower())
    try:
        with ocr.using(ocr_options, pages):
            doc = fn(path)
    except LoaderError:
        raise
    except RecursionError as e:
        raise LoaderError(f"corrupt {kind}: nested too deeply to read") from e
    except MemoryError as e:
        raise LoaderError(f"{kind} too large to read in memory") from e
    except Exception as e:  # every parser has its own exception zoo; the reason is what matters here
        detail = (str(e).strip() or type(e).__name__)[:300]
        raise LoaderError(f"corrupt {kind}: {detail}") from e
    doc.sections = non_empty(doc.sections)
    if not doc.sections:
        raise LoaderError(f"no text found in this {kind}")
    return doc
