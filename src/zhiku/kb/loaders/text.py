"""Plain text, Markdown and reStructuredText. Markdown and reST headings give each section its heading trail;
heading lines stay in the text too, so the body reads as the file does."""

from __future__ import annotations

import re
from pathlib import Path

from .base import LoadedDoc, Section, decode_text

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# reST section adornment: one repeated punctuation character, at least as long as the title.
_RST_ADORN = re.compile(r"^([=\-`:'\"~^_*+#<>.])\1{2,}[ \t]*$")


# Binary formats that turn up under a text suffix (a renamed image or archive), by their first bytes.
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF87a", "a GIF image"),
          (b"GIF89a", "a GIF image"), (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"),
          (b"%PDF-", "a PDF"), (b"PK\x03\x04", "a zip archive (or .docx/.xlsx/.pptx/.epub)"),
          (b"\x1f\x8b", "gzip-compressed data"), (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
          (b"Rar!\x1a\x07", "a RAR archive"), (b"\x7fELF", "a program (ELF)"),
          (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office file (.doc/.xls/.ppt)"),
          (b"SQLite format 3\x00", "an SQLite database"), (b"OggS\x00", "Ogg audio or video"),
          (b"fLaC", "FLAC audio"), (b"\x00asm", "WebAssembly"))
_SNIFF_BYTES = 8192
# C0 control bytes that never occur in text (tab, newlines, form feed, escape and SUB do).
_CONTROL = bytes(b for b in range(32) if b not in b"\t\n\v\f\r\x1a\x1b")
_TEXT_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")  # UTF-8, UTF-16/32: their NULs are text


def sniff_binary(head: bytes) -> str | None:
    """Why the first bytes of a file with a text suffix are not text (a known magic number, or too many
    NUL and control bytes), else None. Run before decoding, so a renamed PNG is refused, not indexed."""
    if head.startswith(_TEXT_BOMS):
        return None
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return f"binary content, not text: this is {what}"
    if head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"WEBP", b"AVI "):
        return "binary content, not text: this is a RIFF media file"
    if head[4:8] == b"ftyp":
        return "binary content, not text: this is an MP4/HEIF media file"
    sample = head[:_SNIFF_BYTES]
    control = len(sample) - len(sample.translate(None, _CONTROL))
    if sample and control / len(sample) > 0.05:
        return (f"binary content, not text: {control / len(sample):.0%} of the first bytes are NUL or control "
                "bytes (UTF-16 text needs a byte-order mark)")
    return None


def read_text(path: Path) -> tuple[str, list[str]]:
    warnings: list[str] = []
    text = decode_text(path.read_bytes(), warnings)
    return text.replace("\r\n", "\n").replace("\r", "\n"), warnings


class _Builder:
    """Collects lines into sections, starting a new section at each heading."""

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self.trail: list[tuple[int, str]] = []
        self.lines: list[str] = []

    def flush(self) -> None:
        text = "\n".join(self.lines).strip("\n")
        if text.strip():
            self.sections.append(Section(text, None, [t for _, t in self.trail]))
        self.lines = []

    def heading(self, level: int, title: str, lines: list[str]) -> None:
        self.flush()
        self.trail = [(lv, t) for lv, t in self.trail if lv < level] + [(level, title)]
        self.lines = list(lines)


def load_txt(path: Path) -> LoadedDoc:
    text, warnings = read_text(path)
    return LoadedDoc("text", [Section(text)], warnings)


def load_markdown(path: Path) -> LoadedDoc:
    text, warnings = read_text(path)
    lines = text.split("\n")
    b = _Builder()
    start = 0
    if lines and lines[0].strip() == "---":  # YAML front matter: plain text, its "---" is no heading
        end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
        if end is not None:
            b.lines = lines[: end + 1]
            start = end + 1
    fence: str | None = None
    for line in lines[start:]:
        m = _FENCE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            b.lines.append(line)
            continue
        if m:
            fence = m.group(1)
            b.lines.append(line)
            continue
        atx = _ATX.match(line)
        if atx and atx.group(2):
            b.heading(len(atx.group(1)), atx.group(2).strip(), [line])
            continue
        setext = _SETEXT.match(line)
        prev = b.lines[-1] if b.lines else ""
        if setext and prev.strip() and not _ATX.match(prev) and not _FENCE.match(prev):
            # "Title\n===" is level 1, "Title\n---" level 2; the title line moves into the new section.
            b.lines.pop()
            b.heading(1 if setext.group(1)[0] == "=" else 2, prev.strip(), [prev, line])
            continue
        b.lines.append(line)
    b.flush()
    return LoadedDoc("markdown", b.sections, warnings)


def load_rst(path: Path) -> LoadedDoc:
    text, warnings = read_text(path)
    lines = text.split("\n")
    b = _Builder()
    levels: list[tuple[str, bool]] = []  # adornment styles in order of first use = heading levels
    i = 0
    while i < len(lines):
        line = lines[i]
        over = _RST_ADORN.match(line)
        # Over- and underlined title: adornment, title, same adornment.
        if (over and i + 2 < len(lines) and lines[i + 1].strip() and lines[i + 2].strip() == line.strip()
                and len(line.strip()) >= len(lines[i + 1].strip())):
            style = (line.strip()[0], True)
            title_lines = lines[i: i + 3]
            title = lines[i + 1].strip()
            i += 3
        elif (line.strip() and not over and i + 1 < len(lines) and _RST_ADORN.match(lines[i + 1])
              and len(lines[i + 1].strip()) >= len(line.strip())):
            style = (lines[i + 1].strip()[0], False)
            title_lines = lines[i: i + 2]
            title = line.strip()
            i += 2
        else:
            b.lines.append(line)
            i += 1
            continue
        if style not in levels:
            levels.append(style)
        b.heading(levels.index(style) + 1, title, title_lines)
    b.flush()
    return LoadedDoc("rst", b.sections, warnings)
