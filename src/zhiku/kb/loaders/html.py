"""HTML -> readable text in sections, h1-h6 giving the heading trail. Also used for EPUB chapters and
HTML-only e-mails. Scripts, styles and page chrome (navigation, site header and footer) are dropped."""

from __future__ import annotations

import re
from pathlib import Path

from bs4 import (
    BeautifulSoup,
    Comment,
    Declaration,
    Doctype,
    NavigableString,
    PageElement,
    ProcessingInstruction,
    Tag,
)

from .base import LoadedDoc, Section, decode_text

_DROP = {"script", "style", "noscript", "template", "nav", "iframe", "svg", "canvas", "head", "button", "select"}
# A <header>/<footer> inside an article or section is that part's own title block, not site chrome.
_CHROME = {"header", "footer"}
_CONTENT = {"article", "main", "section"}
_HEADINGS = {f"h{i}": i for i in range(1, 7)}
_BLOCK = {
    "address", "article", "aside", "blockquote", "body", "br", "caption", "dd", "details", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "header", "hr", "html", "legend", "li", "main", "ol",
    "p", "pre", "section", "summary", "table", "tbody", "thead", "tfoot", "tr", "ul",
}
_CELL = {"td", "th"}
_SKIP_STRINGS = (Comment, Declaration, Doctype, ProcessingInstruction)
# EPUB chapters are XHTML; they are read with the forgiving HTML parser on purpose, without their XML
# declaration (which would only make BeautifulSoup warn about it).
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_SPACES = re.compile(r"[ \t\r\n\f\v\u00a0]+")


def _is_chrome(tag: Tag) -> bool:
    return tag.name in _CHROME and tag.find_parent(_CONTENT) is None


class _Collector:
    def __init__(self, heading_base: list[str]) -> None:
        self.base = heading_base
        self.sections: list[Section] = []
        self.trail: list[tuple[int, str]] = []
        self.lines: list[str] = []
        self.line: list[str] = []

    def text(self, s: str, pre: bool) -> None:
        self.line.append(s if pre else _SPACES.sub(" ", s))

    def cell(self) -> None:
        if self.line and "".join(self.line).strip():
            self.line.append(" | ")

    def newline(self) -> None:
        joined = "".join(self.line)
        self.line = []
        for part in joined.split("\n"):
            part = part.strip().removesuffix("|").rstrip() if "|" in part else part.strip()
            if part:
                self.lines.append(part)

    def heading(self, level: int, title: str) -> None:
        self.newline()
        self.flush()
        self.trail = [(lv, t) for lv, t in self.trail if lv < level] + [(level, title)]
        self.lines.append(title)

    def flush(self) -> None:
        self.newline()
        if self.lines:
            self.sections.append(Section("\n".join(self.lines), None, self.base + [t for _, t in self.trail]))
        self.lines = []


def html_to_sections(markup: str, heading_base: list[str] | None = None) -> list[Section]:
    soup = BeautifulSoup(_XML_DECLARATION.sub("", markup, count=1), "lxml")
    out = _Collector(list(heading_base or []))
    # Walk with an explicit stack: hostile pages nest deeper than Python's recursion limit.
    stack: list[tuple[PageElement, bool]] = [(soup, False)]
    while stack:
        node, leaving = stack.pop()
        if isinstance(node, NavigableString):
            if not isinstance(node, _SKIP_STRINGS):
                out.text(str(node), pre=node.find_parent("pre") is not None)
            continue
        if not isinstance(node, Tag):
            continue
        name = node.name
        if leaving:
            if name in _BLOCK:
                out.newline()
            continue
        if name in _DROP or _is_chrome(node):
            continue
        if name in _HEADINGS:
            title = _SPACES.sub(" ", node.get_text(" ")).strip()
            if title:
                out.heading(_HEADINGS[name], title)
            continue
        if name in _BLOCK:
            out.newline()
        elif name in _CELL:
            out.cell()
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(list(node.children)))
    out.flush()
    return out.sections


def load_html(path: Path) -> LoadedDoc:
    warnings: list[str] = []
    data = path.read_bytes()
    # Decode ourselves (GBK pages are common); a <meta charset> that disagrees with the bytes is ignored.
    text = decode_text(data, warnings)
    return LoadedDoc("html", html_to_sections(text), warnings)
