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
