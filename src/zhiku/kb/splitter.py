"""Chinese-aware recursive splitter.

Each section is cut into chunks of at most `chunk_size` characters (the body; a title-enhancement prefix
comes on top). A chunk ends at the best break the window allows, trying in turn: paragraph (blank line),
line, sentence end (。！？；… and .!?; before a space), clause (，、： and ,: before a space), word
(a space, or beside a CJK character — Chinese has no spaces between words), and only then an arbitrary
character. A break that would leave the chunk shorter than a third of the size is passed over for a finer
break further on, so that a lone short line does not become a chunk of its own.

What `split` guarantees (tests/test_splitter.py checks each):
1. every chunk body is `section.text[start:end]` verbatim, with no leading or trailing whitespace, and is at
   most `chunk_size` characters long;
2. every non-whitespace character of a section lies inside at least one of its chunks;
3. chunks of a section come in order, each starting and ending after the previous one starts and ends;
4. consecutive chunks overlap by at most `overlap` characters. The next chunk starts at the first word start
   at or after `end - overlap` (never at or before the previous start), skipping whitespace; if that window
   holds no word start the cut is exactly `end - overlap`. So text without word starts (a long token) and
   Chinese text (every character is a word start) overlap by exactly `overlap` (or the previous chunk's
   length less one, if shorter); English overlaps by `overlap` minus at most one word. The one exception is
   a whitespace run longer than the window, where the overlap is dropped rather than filled with blanks.
Memory is one window at a time plus the chunks themselves; a 50 MB single line splits in seconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from zhiku.cjk import CJK as _CJK
from zhiku.cjk import CJK_CHAR as _CJK_CHAR
from zhiku.kb.loaders import Section

_CLOSERS = "”’\"'）)\\]】」』》>"
# Break patterns, coarsest first, as one alternation so that a window is scanned once; the group that
# matched is the level. Only the paragraph and line patterns consume newlines, so a sentence end followed by
# a blank line still counts as a paragraph break. The leading lookahead lets the engine skip ordinary
# characters quickly (about 5x faster than trying all four branches at every position).
_BREAKS = re.compile(
    r"(?=[\n。！？；….!?;，、：,:])(?:"
    r"(\n[ \t\r\f\v]*\n)"  # 1 paragraph
    r"|(\n)"  # 2 line
    rf"|((?:[。！？；…]+|[.!?;]+(?=\s))[{_CLOSERS}]*)"  # 3 sentence
    r"|((?:[，、：]+|[,:]+(?=\s))))"  # 4 clause
)
_LEVELS = 4
_SPACE_OR_CJK = re.compile(rf"[\s{_CJK}]")
# A word starts after whitespace or punctuation, and at or after any CJK character.
_WORD_START = re.compile(rf"(?<=[\s，。！？；、：…,.!?;:{_CJK}])(?=\S)|(?=[{_CJK}])")
_MIN_FILL = 3  # a preferred break must leave the chunk at least chunk_size // _MIN_FILL long


@dataclass
class ChunkDraft:
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _rstrip(text: str, end: int, floor: int) -> int:
    while end > floor and text[end - 1].isspace():
        end -= 1
    return end


def _skip_space(text: str, pos: int, limit: int) -> int:
    while pos < limit and text[pos].isspace():
        pos += 1
    return pos


def _last_word_break(text: str, lo: int, hi: int) -> int | None:
    """Last position in (lo, hi] after whitespace or beside a CJK character; scanning back from the end is
    quick because such a position is normally a few characters away; one C-speed search first rules out
    windows with none at all (a long token), which would otherwise cost a Python step per character."""
    if not _SPACE_OR_CJK.search(text, max(lo - 1, 0), hi + 1):
        return None
    for p in range(hi, lo, -1):
        before, after = text[p - 1], text[p] if p < len(text) else " "
        if before.isspace() or _CJK_CHAR.match(before) or _CJK_CHAR.match(after):
            return p
    return None


def _choose_end(text: str, pos: int, prev_end: int, size: int) -> int:
    """End of the chunk starting at `pos` (exclusive, trailing whitespace dropped), beyond `prev_end`."""
    hi = pos + size
    floor = max(pos, prev_end)
    # Only the last break of each level matters: stripping trailing blanks keeps ends in order.
    last = [0] * _LEVELS
    for m in _BREAKS.finditer(text, pos, hi):
        last[(m.lastindex or 1) - 1] = m.end()
    ends = [_rstrip(text, e, floor) for e in last]
    for min_len in (size // _MIN_FILL, 1):
        for end in ends:
            if end > floor and end - pos >= min_len:
                return end
        word = _last_word_break(text, max(floor, pos + min_len - 1), hi)
        if word is not None and (end := _rstrip(text, word, floor)) > floor:
            return end
    return _rstrip(text, hi, floor)


def _next_start(text: str, start: int, end: int, overlap: int, size: int, limit: int) -> int:
    """Where the chunk after [start, end) begins: the first word start at or after end - overlap."""
    nxt = _skip_space(text, end, limit)
    if overlap > 0:
        lo = max(end - overlap, start + 1)
        if lo < end:
            m = _WORD_START.search(text, lo, end)
            cut = _skip_space(text, m.start() if m else lo, end)
            # Keep the overlap only if the next chunk can still reach the next non-blank character.
            if cut < end and nxt < cut + size:
                return cut
    return nxt


def _split_text(text: str, size: int, overlap: int) -> Iterator[tuple[int, int]]:
    limit = _rstrip(text, len(text), 0)
    pos = _skip_space(text, 0, limit)
    prev_end = pos
    while pos < limit:
        end = limit if limit - pos <= size else _choose_end(text, pos, prev_end, size)
        yield pos, end
        if end >= limit:
            return
        pos, prev_end = _next_start(text, pos, end, overlap, size, limit), end


def iter_split(sections: Sequence[Section], chunk_size: int, overlap: int,
               title_enhance: bool = False) -> Iterator[ChunkDraft]:
    """Like `split`, one chunk at a time (for very large documents)."""
    if chunk_size < 1:
        raise ValueError(f"chunk size must be at least 1, got {chunk_size}")
    if not 0 <= overlap < chunk_size:
        raise ValueError(f"overlap must be at least 0 and below the chunk size {chunk_size}, got {overlap}")
    for index, section in enumerate(sections):
        heading = list(section.heading)
        prefix = " > ".join(heading) + "\n" if title_enhance and heading else ""
        for start, end in _split_text(section.text, chunk_size, overlap):
            yield ChunkDraft(prefix + section.text[start:end], {
                "page": section.page, "heading": heading, "start": start, "end": end, "section": index,
            })


def split(sections: Sequence[Section], chunk_size: int, overlap: int, title_enhance: bool = False) -> list[ChunkDraft]:
    """Cut loaded sections into chunk drafts; metadata holds page, heading trail, start/end character offsets
    into the section's text and the section index."""
    return list(iter_split(sections, chunk_size, overlap, title_enhance))
