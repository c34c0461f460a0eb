"""Hostile files at the loader level (issue 7 item 6), all through `load_guarded`, the path user files take:
each one is either read or refused with a reason, and the next file in the same batch is unaffected."""

from __future__ import annotations

import os
import random
import struct
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import psutil
import pytest
from fpdf import FPDF

from zhiku.config import Settings
from zhiku.kb.loaders import LoadedDoc, LoaderError, Section, load_guarded
from zhiku.kb.loaders.ocr import OcrOptions
from zhiku.kb.splitter import split

# The shipped defaults (120 s per file, 500 MB unzipped), not whatever a zhiku.toml on this machine says.
TIMEOUT: float = Settings.model_fields["parse_timeout"].default
MAX_UNZIPPED = int(Settings.model_fields["max_unzipped_mb"].default * 2**20)
ZH = "知识库问答系统可以在普通电脑上离线运行，不需要显卡。"


def guarded(path: Path, timeout: float = TIMEOUT, **kw: Any) -> LoadedDoc:
    return load_guarded(path, timeout=timeout, max_unzipped_bytes=MAX_UNZIPPED, **kw)


def pdf_bytes(pages: list[str]) -> bytes:
    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.cell(text=text)
    return bytes(pdf.output())


# Test-only parsers, run in the guard's worker process (it imports them from this module by name): they
# stand in for a real parser stuck in a loop or killed on a hostile file, which cannot be had on demand.
def hanging_parser(path: Path) -> LoadedDoc:
    while True:
        time.sleep(0.5)


def crashing_parser(path: Path) -> LoadedDoc:
    os._exit(70)


# ---------------------------------------------------------------- corrupt, mislabelled, empty


def test_truncated_pdf(tmp_path: Path) -> None:
    data = pdf_bytes([f"Page {i} of the report" for i in range(1, 6)])
    path = tmp_path / "cut.pdf"
    path.write_bytes(data[: len(data) // 2])
    # The cross-reference table sits at the end, so half a PDF has none: refused, saying it is a PDF problem.
    with pytest.raises(LoaderError, match="^corrupt PDF: "):
        guarded(path)


@pytest.mark.parametrize(("suffix", "reason"), [
    (".pdf", "^corrupt PDF: "),
    (".docx", r"^corrupt \.docx file: not a valid zip archive"),
    (".xlsx", r"^corrupt \.xlsx file: not a valid zip archive"),
])
def test_random_bytes_with_a_document_suffix(tmp_path: Path, suffix: str, reason: str) -> None:
    path = tmp_path / f"random{suffix}"
    path.write_bytes(random.Random(7).randbytes(64 * 1024))
    with pytest.raises(LoaderError, match=reason):
        guarded(path)


@pytest.mark.parametrize(("suffix", "kind"), [(".docx", "Word"), (".xlsx", "Excel"), (".pptx", "PowerPoint"),
                                              (".epub", "EPUB")])
def test_a_zip_that_is_not_the_format_it_claims(tmp_path: Path, suffix: str, kind: str) -> None:
    path = tmp_path / f"plain{suffix}"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hello.txt", "just a zip")
    with pytest.raises(LoaderError, match=f"^corrupt {kind}"):
        guarded(path)


def test_empty_file(tmp_path: Path) -> None:
    for name in ("empty.pdf", "empty.txt", "empty.docx"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(LoaderError, match="^empty file$"):
            guarded(tmp_path / name)


def test_invalid_utf8_is_read_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(("Readable English line. " * 20).encode() + b"\xff\xfe\xc3\x28\xa0\xa1" + b" tail text")
    doc = guarded(path)
    assert doc.sections[0].text.startswith("Readable English line.") and doc.sections[0].text.endswith("tail text")
    assert len(doc.warnings) == 1  # the file is read, and the user is told the decoding was a guess


def test_gb18030_text(tmp_path: Path) -> None:
    text = "第一章 总则\n" + ZH * 5 + "\n中文文件常常不是 UTF-8 编码，而是 GB18030 或 GBK。𠀀𠀁\n"  # 𠀀: 4-byte GB18030
    path = tmp_path / "gb.txt"
    path.write_bytes(text.encode("gb18030"))
    doc = guarded(path)
    assert doc.sections == [Section(text)]
    assert doc.warnings == ["decoded as GB18030"]


# ---------------------------------------------------------------- zip bombs


def write_zip(path: Path, members: list[tuple[str, bytes, int, int, int]]) -> None:
    """A zip written by hand from (name, stored bytes, crc32, uncompressed size, method) — zipfile cannot
    store data compressed elsewhere, and compressing 600 MB here would take seconds."""
    out, central = bytearray(), bytearray()
    for name, data, crc, size, method in members:
        raw, offset = name.encode(), len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data), size, len(raw), 0)
        out += raw + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, len(data), size,
                               len(raw), 0, 0, 0, 0, 0, offset) + raw
    out += central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central),
                                 len(out), 0)
    path.write_bytes(bytes(out))


def test_zip_bomb_named_docx_is_refused_before_parsing(tmp_path: Path) -> None:
    # A real bomb: 600 MB of zeros as 600 copies of one independently decodable deflate segment (a full
    # flush resets the compressor's history), so the stream is valid and inflates to the full size.
    block = b"\0" * 2**20
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    stream = segment * 600 + deflate.flush()
    crc = 0
    for _ in range(600):
        crc = zlib.crc32(block, crc)
    types = b"<Types/>"
    path = tmp_path / "bomb.docx"
    write_zip(path, [("[Content_Types].xml", types, zlib.crc32(types), len(types), zipfile.ZIP_STORED),
                     ("word/document.xml", stream, crc, 600 * 2**20, zipfile.ZIP_DEFLATED)])
    assert path.stat().st_size < 2**20
    with zipfile.ZipFile(path) as z, z.open("word/document.xml") as member:
        assert member.read(2**20) == block  # it really does inflate
    started = time.monotonic()
    with pytest.raises(LoaderError, match="^archive expands to 600 MB, over the 500 MB limit$"):
        guarded(path)
    assert time.monotonic() - started < 1  # refused from the zip directory alone, nothing decompressed


def test_too_many_archive_entries(tmp_path: Path) -> None:
    path = tmp_path / "many.xlsx"
    with zipfile.ZipFile(path, "w") as z:
        for i in range(2001):
            z.writestr(f"xl/x{i}.xml", "")
    with pytest.raises(LoaderError, match="^archive has 2,001 entries, over the 2,000 limit$"):
        guarded(path, max_entries=2000)


# ---------------------------------------------------------------- big files


def test_pdf_with_2000_pages(tmp_path: Path) -> None:
    # Small pages from a core font keep writing and parsing quick; every other page has no text layer.
    path = tmp_path / "long.pdf"
    path.write_bytes(pdf_bytes([f"Page {n} text" if n % 2 else "" for n in range(1, 2001)]))
    doc = guarded(path, ocr=OcrOptions(enabled=False))  # OCR's own page cap is tested in test_ocr.py
    assert [s.page for s in doc.sections] == list(range(1, 2001, 2))
    assert doc.sections[-1].text == "Page 1999 text"
    assert doc.warnings[:2] == ["page 2: no text — scanned?", "page 4: no text — scanned?"]
    assert doc.warnings[20:] == ["980 more pages with no text — scanned?"]


def test_50_mb_single_line_text_loads_and_splits(tmp_path: Path) -> None:
    unit = ("zhiku answers questions offline on an ordinary CPU, " + ZH).encode("utf-8")
    path = tmp_path / "huge.txt"
    path.write_bytes(unit * (50 * 2**20 // len(unit) + 1))
    assert path.stat().st_size >= 50 * 2**20 and b"\n" not in path.read_bytes()[:1000]
    started = time.monotonic()
    doc = guarded(path)
    text = doc.sections[0].text
    loaded = time.monotonic()
    chunks = split(doc.sections, 500, 100, title_enhance=False)
    done = time.monotonic()
    assert len(chunks) > len(text) // 500 and all(len(c.text) <= 500 for c in chunks)
    assert chunks[-1].metadata["end"] == len(text)
    # Linear work: a few seconds each on this 2-core box; a quadratic step would take hours.
    assert loaded - started < 30 and done - loaded < 45, (loaded - started, done - loaded)


# ---------------------------------------------------------------- parsers that hang or die


def live_children() -> set[int]:
    return {p.pid for p in psutil.Process().children() if p.status() != psutil.STATUS_ZOMBIE}


def test_a_hanging_parser_is_killed_at_the_time_limit(tmp_path: Path) -> None:
    path = tmp_path / "stuck.txt"
    path.write_text("the parser never finishes this", encoding="utf-8")
    before = live_children()  # idle workers left by earlier tests
    started = time.monotonic()
    with pytest.raises(LoaderError, match="^parse timed out after 3 s$"):
        guarded(path, timeout=3, parser=hanging_parser)
    assert time.monotonic() - started < 8
    # The worker that hung was an idle one or a new one; either way it is gone, not left spinning.
    assert live_children() <= before


def test_a_crashing_parser_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "boom.txt"
    path.write_text("x", encoding="utf-8")
    with pytest.raises(LoaderError, match=r"^parser crashed \(exit code 70\)$"):
        guarded(path, parser=crashing_parser)


def test_a_batch_goes_on_after_each_bad_file(tmp_path: Path) -> None:
    good = tmp_path / "good.md"
    good.write_text(f"# 标题\n\n{ZH}\n", encoding="utf-8")
    (tmp_path / "r.pdf").write_bytes(random.Random(1).randbytes(4096))
    (tmp_path / "e.xlsx").write_bytes(b"")
    (tmp_path / "u.bin").write_bytes(b"\x00\x01")
    (tmp_path / "h.txt").write_text("hang", encoding="utf-8")
    results: dict[str, str] = {}
    for name in ("r.pdf", "good.md", "e.xlsx", "u.bin", "h.txt", "good.md"):
        try:
            parser = hanging_parser if name == "h.txt" else None
            doc = guarded(tmp_path / name, timeout=2 if parser else TIMEOUT, **({"parser": parser} if parser else {}))
            results[name] = doc.sections[0].text
        except LoaderError as e:
            results[name] = f"error: {e}"
    assert results["good.md"] == f"# 标题\n\n{ZH}"
    assert results["r.pdf"].startswith("error: corrupt PDF")
    assert results["e.xlsx"] == "error: empty file"
    assert results["u.bin"] == "error: unsupported file type .bin"
    assert results["h.txt"] == "error: parse timed out after 2 s"
