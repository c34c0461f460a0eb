"""The splitter's guarantees (stated in zhiku/kb/splitter.py), checked as properties over generated text,
plus the behaviour a reader sees on real Chinese and English prose."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zhiku.kb.loaders import Section
from zhiku.kb.splitter import ChunkDraft, split

# Characters chosen to hit every break level: paragraphs, lines, sentence and clause marks in both scripts,
# spaces between English words, CJK characters with no spaces at all.
MIXED = "ab xyz中文字知识库。！？；…，、：.!?;,:\n \t"
CJK_ONLY = "中文字知识库问答系统。！？；，、："
sizes = st.integers(min_value=1, max_value=80)


@st.composite
def params(draw: st.DrawFn, alphabet: str, max_len: int = 600) -> tuple[str, int, int]:
    text = draw(st.text(alphabet=alphabet, max_size=max_len))
    size = draw(sizes)
    overlap = draw(st.integers(min_value=0, max_value=size - 1))
    return text, size, overlap


def chunks_of(text: str, size: int, overlap: int) -> list[ChunkDraft]:
    return split([Section(text, page=3, heading=["A", "B"])], size, overlap, title_enhance=False)


def overlaps(chunks: list[ChunkDraft]) -> list[tuple[ChunkDraft, ChunkDraft, int]]:
    return [(a, b, max(0, a.metadata["end"] - b.metadata["start"])) for a, b in zip(chunks, chunks[1:], strict=False)]


@settings(max_examples=300, deadline=None)
@given(params(MIXED))
def test_bodies_are_verbatim_stripped_slices_within_the_size(p: tuple[str, int, int]) -> None:
    text, size, overlap = p
    for c in chunks_of(text, size, overlap):
        start, end = c.metadata["start"], c.metadata["end"]
        assert c.text == text[start:end]
        assert 0 < len(c.text) <= size
        assert c.text == c.text.strip()
        assert c.metadata["page"] == 3 and c.metadata["heading"] == ["A", "B"] and c.metadata["section"] == 0


@settings(max_examples=300, deadline=None)
@given(params(MIXED))
def test_every_non_blank_character_is_covered(p: tuple[str, int, int]) -> None:
    text, size, overlap = p
    covered = [False] * len(text)
    for c in chunks_of(text, size, overlap):
        for i in range(c.metadata["start"], c.metadata["end"]):
            covered[i] = True
    assert all(covered[i] for i, ch in enumerate(text) if not ch.isspace())


@settings(max_examples=300, deadline=None)
@given(params(MIXED))
def test_chunks_advance_and_overlap_at_most_as_asked(p: tuple[str, int, int]) -> None:
    text, size, overlap = p
    chunks = chunks_of(text, size, overlap)
    for a, b, ov in overlaps(chunks):
        assert b.metadata["start"] > a.metadata["start"]
        assert b.metadata["end"] > a.metadata["end"]
        assert ov <= overlap


@settings(max_examples=300, deadline=None)
@given(params(CJK_ONLY))
def test_chinese_text_overlaps_by_exactly_the_overlap(p: tuple[str, int, int]) -> None:
    # Every CJK character starts a word, so the cut lands exactly `overlap` back (or just after the previous
    # start when the previous chunk is shorter than that).
    text, size, overlap = p
    for a, _b, ov in overlaps(chunks_of(text, size, overlap)):
        assert ov == min(overlap, len(a.text) - 1)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=900), sizes, st.data())
def test_a_text_without_breaks_is_cut_at_exact_strides(n: int, size: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(min_value=0, max_value=size - 1))
    chunks = chunks_of("x" * n, size, overlap)
    starts: list[int] = []
    while n and (not starts or starts[-1] + size < n):
        starts.append(starts[-1] + size - overlap if starts else 0)
    assert [c.metadata["start"] for c in chunks] == starts
    assert all(len(c.text) == size for c in chunks[:-1])
    assert all(ov == overlap for _, _, ov in overlaps(chunks))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="abcdefg", min_size=1, max_size=7), max_size=150), sizes, st.data())
def test_english_overlap_falls_short_by_less_than_a_word(words: list[str], size: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(min_value=0, max_value=size - 1))
    text = " ".join(words)
    longest = max((len(w) for w in words), default=0)
    for a, b, ov in overlaps(chunks_of(text, size, overlap)):
        assert min(overlap, len(a.text) - 1) - longest <= ov <= overlap
        start = b.metadata["start"]
        # the cut is at a word start unless the window held none (then it is exactly `overlap` back)
        assert start == 0 or text[start - 1] == " " or ov == min(overlap, len(a.text) - 1)


def test_prefers_paragraphs_then_sentences_and_keeps_heading_and_page() -> None:
    para1 = "知识库问答系统在普通电脑上运行，不需要显卡。它支持多种文档格式。"
    para2 = "第二段讲的是检索：先用 BM25 找到候选段落，再用向量排序。最后把段落交给模型回答！"
    text = f"{para1}\n\n{para2}"
    chunks = split([Section(text, page=7, heading=["第一章", "概述"])], 60, 10, title_enhance=False)
    assert chunks[0].text == para1  # a whole paragraph fits: the chunk ends at the blank line
    assert all(c.text.endswith(("。", "！")) for c in chunks)  # later cuts fall on sentence ends
    assert chunks[-1].text.endswith("最后把段落交给模型回答！")
    assert all(c.metadata["page"] == 7 and c.metadata["heading"] == ["第一章", "概述"] for c in chunks)


def test_title_enhancement_prefixes_the_trail_outside_the_size_bound() -> None:
    body = "This is a sentence about retrieval. " * 10
    plain = split([Section(body, heading=["Guide", "Search"])], 100, 20, title_enhance=False)
    enhanced = split([Section(body, heading=["Guide", "Search"])], 100, 20, title_enhance=True)
    assert [c.metadata for c in plain] == [c.metadata for c in enhanced]
    for p, e in zip(plain, enhanced, strict=True):
        assert e.text == "Guide > Search\n" + p.text
        assert len(p.text) <= 100
    untitled = split([Section(body)], 100, 20, title_enhance=True)
    assert [c.text for c in untitled] == [c.text for c in plain]


def test_sections_are_split_independently_and_numbered() -> None:
    sections = [Section("第一节内容。", page=1), Section("   \n  "), Section("Second section.", page=2, heading=["H"])]
    chunks = split(sections, 50, 10, title_enhance=False)
    assert [(c.text, c.metadata["section"], c.metadata["page"]) for c in chunks] == [
        ("第一节内容。", 0, 1), ("Second section.", 2, 2)]


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (10, 10), (10, -1)])
def test_bad_sizes_are_refused(size: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        split([Section("text")], size, overlap, title_enhance=False)
