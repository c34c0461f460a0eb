"""Pictures as documents (.png .jpg/.jpeg .bmp .tif/.tiff .webp), read by OCR; every page of a TIFF.

Untrusted images are checked from their headers before any pixel is decoded: the format must be the one
the suffix promises, and no page may exceed MAX_PIXELS (a decompression bomb declares enormous dimensions
in a few bytes). A truncated or corrupt file is refused by Pillow's own checks with the reason."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from . import ocr
from .base import LoadedDoc, LoaderError, Section

# 64 megapixels: an A3 page scanned at 600 dpi is 70 MP and an A4 page 35 MP; decoded RGB it is 192 MB.
MAX_PIXELS = 64_000_000
_FORMATS = {".png": {"PNG"}, ".jpg": {"JPEG", "MPO"}, ".jpeg": {"JPEG", "MPO"}, ".bmp": {"BMP", "DIB"},
            ".tif": {"TIFF"}, ".tiff": {"TIFF"}, ".webp": {"WEBP"}}
# The engine detects at most 1600 px on the long side and crops lines from the full image; beyond this
# the extra pixels only cost time.
_MAX_SIDE = 4096


def _open(path: Path) -> Image.Image:
    Image.MAX_IMAGE_PIXELS = None  # our own, clearer check below replaces Pillow's warning
    try:
        image = Image.open(path)  # reads the header only
    except UnidentifiedImageError as e:
        raise LoaderError(f"not a readable image: {path.suffix.lower()} file with unknown content") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise LoaderError(f"corrupt image: {e}") from e
    expected = _FORMATS.get(path.suffix.lower(), set())
    if image.format not in expected:
        image.close()
        raise LoaderError(f"the file is {image.format or 'an unknown format'}, not the {path.suffix.lower()} "
                          "its name says")
    return image


def _check_size(image: Image.Image, page: int) -> None:
    w, h = image.size
    if w <= 0 or h <= 0:
        raise LoaderError(f"corrupt image: page {page} is {w}×{h} pixels")
    if w * h > MAX_PIXELS:
        raise LoaderError(f"image page {page} is {w}×{h} pixels ({w * h / 1e6:.0f} megapixels), over the "
                          f"{MAX_PIXELS / 1e6:.0f} megapixel limit: refused before decoding (decompression bomb?)")


def _pages(image: Image.Image, count: int) -> Iterator[bytes]:
    for i in range(count):
        try:
            image.seek(i)
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # Pillow warns, rather than fails, on some damaged data
                frame = ImageOps.exif_transpose(image)
                frame.load()
        except (OSError, SyntaxError, ValueError, EOFError, Warning) as e:
            raise LoaderError(f"corrupt or truncated image (page {i + 1}): {e}") from e
        if max(frame.size) > _MAX_SIDE:
            frame = frame.copy()
            frame.thumbnail((_MAX_SIDE, _MAX_SIDE))
        yield ocr.encode(frame)


def load_image(path: Path) -> LoadedDoc:
    options = ocr.options()
    if not options.enabled:
        raise LoaderError("images are read by OCR, which is turned off (setting ocr)")
    with _open(path) as image:
        frames = getattr(image, "n_frames", 1)
        count = min(frames, options.max_pages)
        for i in range(count):  # every page's header, before decoding any
            image.seek(i)
            _check_size(image, i + 1)
        if image.format == "PNG":  # checks every chunk's CRC without decompressing: catches truncation
            try:
                with Image.open(path) as probe:
                    probe.verify()
            except Exception as e:  # noqa: BLE001 - Pillow raises several kinds for a damaged PNG
                raise LoaderError(f"corrupt or truncated PNG: {e}") from e
        texts = ocr.read_pages(_pages(image, count), count)
    sections: list[Section] = []
    warnings_: list[str] = []
    for number, text in enumerate(texts, start=1):
        if isinstance(text, LoaderError):
            warnings_.append(f"page {number}: {text}")
        elif text.strip():
            sections.append(Section(text, page=number))
    if frames > count:
        warnings_.append(f"pages {count + 1}–{frames} not read: over the OCR cap of {count} pages (ocr_max_pages)")
    if not sections:
        reason = warnings_[0] if warnings_ else "OCR found no text in this image"
        raise LoaderError(reason)
    return LoadedDoc("image", sections, warnings_)
