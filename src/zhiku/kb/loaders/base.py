"""Plain data every loader returns, and the helpers several loaders share."""

from __future__ import annotations

import codecs
import re
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


def _codec(name: str) -> str:
    return codecs.lookup(name).name


# On short texts charset-normalizer often calls GBK bytes Big5 or CP949 (all three are double-byte and
# overlap), and CP1252 bytes CP1250. zhiku's users write mostly simplified Chinese and Western languages, so
# among double-byte East Asian guesses GB18030 (the superset of GB2312/GBK) wins when it decodes to
# plausible Chinese (no kana and no private-use characters, which Big5 bytes read as GB18030 give) unless
# the guess is Japanese with kana in it (common GBK text has no Shift-JIS kana byte pairs); among Western
# single-byte guesses CP1252 wins. Korean files read as GB18030 — a known limit.
_EAST_ASIAN = {_codec(n) for n in (
    "big5", "big5hkscs", "cp950", "cp949", "euc_kr", "johab", "iso2022_kr", "gb2312", "gbk", "gb18030", "hz",
    "shift_jis", "cp932", "euc_jp", "shift_jis_2004", "shift_jisx0213", "euc_jis_2004", "iso2022_jp")}
_WESTERN = {_codec(n) for n in ("cp1250", "cp1252", "latin_1", "iso8859_2", "iso8859_15", "cp850", "cp437",
                                "mac_roman", "mac_latin2")}
_JAPANESE = {_codec(n) for n in ("shift_jis", "cp932", "euc_jp", "shift_jis_2004", "shift_jisx0213",
                                 "euc_jis_2004", "iso2022_jp")}
_KANA = re.compile("[\u3040-\u30ff]")
_NOT_CHINESE = re.compile("[\u3040-\u30ff\ue000-\uf8ff]")  # kana, private use area


def _strict(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def _guess(data: bytes) -> tuple[str, str] | None:
    best = from_bytes(data[:_DETECT_BYTES]).best()
    if best is None:
        return None
    enc = _codec(best.encoding)
    text = _strict(data, enc)
    if enc in _JAPANESE and text is not None and _KANA.search(text):
        return text, enc
    if enc in _EAST_ASIAN:
        gb = _strict(data, "gb18030")
        if gb is not None and not _NOT_CHINESE.search(gb):
            return gb, "gb18030"
    if enc in _WESTERN and (western := _strict(data, "cp1252")) is not None:
        return western, "cp1252"
    return (text, enc) if text is not None else None


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
    guess = _guess(data)
    if guess is not None:
        warnings.append(f"decoded as {guess[1].upper()}")
        return guess[0]
    text = data.decode("utf-8", errors="replace")
    warnings.append(f"not valid UTF-8 and no other encoding fits: {text.count(chr(0xFFFD))} bad bytes replaced")
    return text


def non_empty(sections: list[Section]) -> list[Section]:
    return [s for s in sections if s.text.strip()]
