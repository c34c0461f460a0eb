"""OCR boxes -> paragraphs in reading order: boxes on the same line are joined left to right (with a space
where they stand apart), lines top to bottom, and a new paragraph starts at a larger vertical gap, an
indented first line (Chinese paragraphs indent two characters and have no blank line) or after a line that
stops well short of the right margin.
Pure geometry, independent of the OCR engine; one column (multi-column pages read across the columns)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    """One recognised text run: its axis-aligned bounds in pixels and its text."""

    x0: float
    y0: float
    x1: float
    y1: float
    text: str

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2

    @property
    def height(self) -> float:
        return self.y1 - self.y0


@dataclass
class _Line:
    boxes: list[Box]

    @property
    def x0(self) -> float:
        return min(b.x0 for b in self.boxes)

    @property
    def x1(self) -> float:
        return max(b.x1 for b in self.boxes)

    @property
    def cy(self) -> float:
        return statistics.fmean(b.cy for b in self.boxes)

    def text(self) -> str:
        out = ""
        prev: Box | None = None
        for b in sorted(self.boxes, key=lambda b: b.x0):
            # Boxes further apart than a character (a text height) are separate texts (a table cell, a
            # label beside a figure): a space between them even in CJK, which otherwise runs them together.
            apart = prev is not None and b.x0 - prev.x1 > max(prev.height, b.height)
            out = f"{out} {b.text.strip()}" if apart and out else join_words(out, b.text.strip())
            prev = b
        return out


def _wide(ch: str) -> bool:
    """CJK and full-width characters, which are written without spaces between them."""
    return ord(ch) >= 0x2E80


def join_words(left: str, right: str) -> str:
    """Join two runs of text: no space where either side is CJK, one space otherwise."""
    if not left or not right:
        return left or right
    return left + (right if _wide(left[-1]) or _wide(right[0]) else " " + right)


def _lines(boxes: list[Box], unit: float) -> list[_Line]:
    """Group boxes whose vertical centres are within half a text height of each other into lines.
    `unit` is the median box height: a slightly rotated page inflates single boxes, not the median."""
    lines: list[_Line] = []
    for b in sorted(boxes, key=lambda b: (b.cy, b.x0)):
        line = next((ln for ln in reversed(lines[-3:]) if abs(ln.cy - b.cy) < unit / 2), None)
        if line is None:
            lines.append(_Line([b]))
        else:
            line.boxes.append(b)
    return sorted(lines, key=lambda ln: ln.cy)


def _first_word(line: _Line) -> float:
    """Estimated width of the line's first word (one character for CJK): a previous line that had room for
    it ended its paragraph, whereas ragged-right English lines fall short by less than that."""
    text = line.text()
    n = 1 if _wide(text[0]) else len(text.split(" ", 1)[0])
    return (line.x1 - line.x0) * n / len(text)


def paragraphs(boxes: list[Box]) -> list[str]:
    """Reading-order paragraphs of a page's boxes."""
    boxes = [b for b in boxes if b.text.strip()]
    if not boxes:
        return []
    unit = statistics.median(b.height for b in boxes)
    lines = _lines(boxes, unit)
    pitch = statistics.median([b.cy - a.cy for a, b in zip(lines, lines[1:], strict=False)] or [unit])
    out: list[str] = []
    current = ""
    for i, line in enumerate(lines):
        if i:
            # Margins are compared with the neighbouring lines only: on a slightly rotated scan the page's
            # left and right margins drift by more than an indent from top to bottom.
            prev = lines[i - 1]
            near = lines[max(0, i - 3): i + 2]
            new = (line.cy - prev.cy > 1.5 * pitch + 1  # a blank line or a larger gap
                   or line.x0 - min(ln.x0 for ln in near) > 1.5 * unit  # an indented first line
                   or max(ln.x1 for ln in near) - prev.x1 > _first_word(line) + unit)  # prev. ended early
            if new:
                out.append(current)
                current = ""
        current = join_words(current, line.text())
    out.append(current)
    return [p for p in out if p]
