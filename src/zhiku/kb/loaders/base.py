"""Plain data every loader returns, and the helpers several loaders share."""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

from charset_normalizer import from_bytes


class LoaderError(Exception):
    """A file could not be read; the message says why and is stored on the document record."""


@dataclass
class Section:
    """A run of text that shares one page and one heading trail (outermost heading first)."""

    text: str
    page: int | None = None
    heading: list[str] = field(default_factory=list)


@dataclass
class LoadedDoc:
    loader: str
    sections: list[Section]
    warnings: list[str] = field(default_factory=list)


# Enough of the file for charset-normalizer to decide; scanning 50 MB would cost seconds for no gain.
_DETECT_BYTES = 256 * 1024
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# What charset-normalizer may call a GB-family file; GB18030 decodes all of them (it is their superset).
_GB_FAMILY = {"gb2312", "gbk", "gb18030", "hz", "cp936"}


def decode_text(data: bytes, warnings: list[str]) -> str:
    """Bytes of a text file -> str. UTF-8 first (by far the most common), then a detected encoding;
    undecodable bytes become U+FFFD with a warning, never an exception."""
    for bom, bom_encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(bom_encoding, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    best = from_bytes(data[:_DETECT_BYTES]).best()
    if best is not None:
        enc = best.encoding
        if enc.replace("_", "").lower() in _GB_FAMILY:
            enc = "gb18030"
        try:
            text = data.decode(enc)
            warnings.append(f"decoded as {enc.upper()}")
            return text
        except (UnicodeDecodeError, LookupError):
            pass  # the sample fit but the rest does not: fall back below
    text = data.decode("utf-8", errors="replace")
    warnings.append(f"not valid UTF-8 and no other encoding fits: {text.count(chr(0xFFFD))} bad bytes replaced")
    return text


def non_empty(sections: list[Section]) -> list[Section]:
    return [s for s in sections if s.text.strip()]
