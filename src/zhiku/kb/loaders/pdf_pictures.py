"""Pictures on PDF pages that have a text layer (a scanned figure, a screenshot): which are worth OCR, their
pixels, and whether the text layer already says what OCR read in them (issue 20; Chatchat's PDF loader
OCRs such pictures too)."""

from __future__ import annotations

from difflib import SequenceMatcher
from typing import Any

# Smaller pictures (bullets, icons, rules) hold no readable text; a picture must also cover this share of
# the page as drawn (a logo in a header does not).
MIN_PICTURE_PX = 32
MIN_PICTURE_AREA = 0.01


def has_pictures(page: Any) -> bool:
    """Whether this pypdf page's resources name an image of at least MIN_PICTURE_PX on each side (also
    inside forms). Cheap: dictionary look-ups only, nothing decoded, so text-only pages pay almost nothing.
    Inline images (small by design) are not looked for."""
    try:
        return _large_image_in(page.get("/Resources"), depth=0)
    except (AttributeError, KeyError, TypeError, ValueError, RecursionError):  # a damaged resource tree
        return False


def _large_image_in(resources: Any, depth: int) -> bool:
    resources = resources.get_object() if resources is not None else None
    xobjects = resources.get("/XObject") if hasattr(resources, "get") else None
    xobjects = xobjects.get_object() if xobjects is not None else None
    if xobjects is None or not hasattr(xobjects, "values"):
        return False
    for ref in xobjects.values():
        x = ref.get_object()
        kind = x.get("/Subtype")
        if kind == "/Image" and min(int(x.get("/Width", 0)), int(x.get("/Height", 0))) >= MIN_PICTURE_PX:
            return True
        if kind == "/Form" and depth < 2 and _large_image_in(x.get("/Resources"), depth + 1):
            return True
    return False


def large_pictures(page: Any) -> list[Any]:
    """The image objects of this pdfium page big enough to hold text, in page order."""
    import pypdfium2.raw as pdfium_c

    width, height = page.get_size()
    out = []
    for obj in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,), max_depth=2):
        left, bottom, right, top = obj.get_bounds()
        px_w, px_h = obj.get_px_size()
        if min(px_w, px_h) >= MIN_PICTURE_PX and (right - left) * (top - bottom) >= MIN_PICTURE_AREA * width * height:
            out.append(obj)
    return out


def picture_image(obj: Any, max_pixels: int) -> Any:
    """A pdfium image object as a PIL image at its own resolution, masks applied, on white."""
    from PIL import Image

    px_w, px_h = obj.get_px_size()
    if px_w * px_h > max_pixels:
        raise ValueError(f"{px_w}×{px_h} pixels, over the {max_pixels // 1_000_000} megapixel limit")
    image = obj.get_bitmap(render=True).to_pil()
    if image.mode in ("RGBA", "LA", "PA"):  # transparent parts would turn black and hide dark text
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    return image


def held_by(picture_text: str, layer_text: str) -> bool:
    """Whether the text layer already holds the picture's text: at least 90 % of its characters (spaces and
    case ignored) found in order in the layer, in runs of 3 or more (OCR misreads a character here and there)."""
    pic = "".join(picture_text.lower().split())
    layer = "".join(layer_text.lower().split())
    if not pic:
        return True
    blocks = SequenceMatcher(None, pic, layer, autojunk=False).get_matching_blocks()
    return sum(b.size for b in blocks if b.size >= 3) >= 0.9 * len(pic)
