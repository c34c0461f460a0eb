"""OCR of images and text-less PDF pages (issue 15), on pictures rendered here from Chinese and English text
with the CJK font scripts/setup-system.sh installs, read by the real engine (faster-paddle)."""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont
from rapidfuzz.distance import Levenshtein

from zhiku.kb.loaders import LoaderError, load, load_guarded
from zhiku.kb.loaders.layout import Box, paragraphs
from zhiku.kb.loaders.ocr import OcrOptions

FONT = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"
OFF = OcrOptions(enabled=False)

ZHENG_HE = "郑和于明朝永乐三年率领船队从南京出发，七次下西洋，最远到达非洲东海岸。"
LIGHTHOUSE = "The lighthouse of Alexandria was built on the island of Pharos around 280 BC."
DUJIANGYAN = "都江堰位于四川省成都市，是战国时期秦国蜀郡太守李冰父子主持修建的水利工程。"
GLACIER = "The Aletsch glacier is the largest glacier in the Alps and covers about eighty square kilometres."
TIFF_PAGES = ["第一页：黄山以奇松、怪石、云海和温泉闻名。Page one is about Mount Huang.",
              "第二页：敦煌莫高窟保存了大量壁画和彩塑。Page two describes the Mogao caves of Dunhuang.",
              "第三页：The Rhine flows from the Swiss Alps to the North Sea."]
SCAN_PAGES = ["扫描件第一页：本合同自双方签字之日起生效，有效期为三年。",
              "Scanned page two: the tenant shall give ninety days written notice before moving out."]


def wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.replace(" ", " \0").split("\0"):  # keep spaces; CJK breaks anywhere
        for piece in ([word] if word.isascii() else list(word)):
            if line and font.getlength(line + piece) > width:
                lines.append(line.rstrip())
                line = piece.lstrip()
            else:
                line += piece
    return lines + [line] if line else lines


def render(paras: list[str], size: int = 24, width: int = 900) -> Image.Image:
    """Paragraphs drawn like a printed page: wrapped lines, a blank line between paragraphs."""
    font = ImageFont.truetype(FONT, size)
    rows: list[str] = []
    for p in paras:
        rows += wrap(p, font, width - 80) + [""]
    img = Image.new("L", (width, 40 + int(size * 1.6) * len(rows)), 255)
    draw = ImageDraw.Draw(img)
    for i, row in enumerate(rows):
        draw.text((40, 20 + int(size * 1.6) * i), row, font=font, fill=0)
    return img


def squeeze(text: str) -> str:
    return "".join(text.split())


def similar(a: str, b: str) -> float:
    """1 - character error rate, spaces ignored."""
    a = squeeze(a)
    return 1 - Levenshtein.distance(a, squeeze(b)) / max(len(a), 1)


def image_pdf(path: Path, pages: list[str | Image.Image]) -> Path:
    """A PDF whose pages are either real text (a str, Helvetica) or only a picture (no text layer)."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for page in pages:
        pdf.add_page()
        if isinstance(page, str):
            pdf.multi_cell(0, 8, page)
        else:
            pdf.image(page, x=10, y=10, w=190)
    pdf.output(str(path))
    return path


def png_bomb(path: Path, side: int = 30_000) -> Path:
    """A real decompression bomb: a valid 1-bit PNG of side x side pixels (900 megapixels) whose zlib
    stream of blank rows takes about 110 kB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = b"\0" * (1 + side // 8)
    body = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


# ---------------------------------------------------------------- layout (pure geometry)


def test_layout_orders_lines_and_splits_paragraphs() -> None:
    h = 20
    boxes = [  # given out of order; the first line of the first paragraph is split in two boxes
        Box(300, 0, 500, h, "第一段的"), Box(40, 0, 290, h, "    第一段开头"),
        Box(0, 30, 500, 30 + h, "第二行写满了整行文字"),
        Box(0, 60, 200, 60 + h, "短行结束。"),  # ended early: the paragraph ends here
        Box(0, 90, 480, 90 + h, "English line one goes"), Box(0, 120, 300, 120 + h, "on here."),
        Box(0, 210, 500, 210 + h, "After a blank gap."),
    ]
    assert paragraphs(boxes) == ["第一段开头第一段的第二行写满了整行文字短行结束。",
                                 "English line one goes on here.", "After a blank gap."]
    assert paragraphs([]) == [] and paragraphs([Box(0, 0, 10, 10, "  ")]) == []


# ---------------------------------------------------------------- images


def test_png_mixed_chinese_and_english_in_reading_order(tmp_path: Path) -> None:
    path = tmp_path / "note.png"
    render([ZHENG_HE, LIGHTHOUSE]).save(path)
    doc = load(path)
    assert doc.loader == "image" and doc.warnings == [] and [s.page for s in doc.sections] == [1]
    paras = doc.sections[0].text.split("\n\n")
    assert len(paras) == 2, paras
    assert similar(paras[0], ZHENG_HE) >= 0.9 and similar(paras[1], LIGHTHOUSE) >= 0.9, paras
    assert "Alexandria was built" in paras[1]  # English words keep their spaces


def test_multi_page_tiff_every_page_and_the_page_cap(tmp_path: Path) -> None:
    path = tmp_path / "scan.tiff"
    first, *rest = [render([t], width=700) for t in TIFF_PAGES]
    first.save(path, save_all=True, append_images=rest, compression="tiff_lzw")
    seen: list[tuple[int, int]] = []
    doc = load_guarded(path, 120, 2**20, pages=lambda d, t: seen.append((d, t)))
    assert [s.page for s in doc.sections] == [1, 2, 3]
    for section, text in zip(doc.sections, TIFF_PAGES, strict=True):
        assert similar(section.text, text) >= 0.85, section.text
    assert seen[0] == (0, 3) and seen[-1] == (3, 3)
    capped = load(path, OcrOptions(max_pages=2))
    assert [s.page for s in capped.sections] == [1, 2]
    assert capped.warnings == ["pages 3–3 not read: over the OCR cap of 2 pages (ocr_max_pages)"]


def test_bad_images_are_refused_with_clear_reasons(tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    Image.new("RGB", (400, 300), "white").save(blank)
    with pytest.raises(LoaderError, match="^OCR found no text in this image$"):
        load_guarded(blank, 60, 2**20)
    good = io.BytesIO()
    render([ZHENG_HE]).save(good, "PNG")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    with pytest.raises(LoaderError, match="^corrupt or truncated PNG"):
        load_guarded(truncated, 60, 2**20)
    with pytest.raises(LoaderError, match=r"30000×30000 pixels \(900 megapixels\), over the 64 megapixel "
                                          r"limit: refused before decoding"):
        load_guarded(png_bomb(tmp_path / "bomb.png"), 60, 2**20)
    liar = tmp_path / "photo.png"
    render([ZHENG_HE]).save(liar, "JPEG")
    with pytest.raises(LoaderError, match="^the file is JPEG, not the .png its name says$"):
        load(liar)
    with pytest.raises(LoaderError, match="turned off"):
        load(tmp_path / "photo.png", OFF)


def test_the_engine_needs_no_network_and_writes_no_cache(tmp_path: Path) -> None:
    """The default model is inside the wheel: with no network (a fresh network namespace, when we may make
    one) and an empty home, OCR still reads, and nothing lands in the home or cache folders."""
    path = tmp_path / "offline.png"
    render([LIGHTHOUSE]).save(path)
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    code = "import sys; from pathlib import Path; from zhiku.kb.loaders import load; " \
           "print(load(Path(sys.argv[1])).sections[0].text)"
    cmd = [sys.executable, "-c", code, str(path)]
    if os.geteuid() == 0 and shutil.which("unshare"):
        cmd = ["unshare", "--net", *cmd]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=True).stdout
    assert "Alexandria" in out
    assert list(home.rglob("*")) == []
    # The one model that would download cannot be chosen, neither in the settings nor below them.
    from pydantic import ValidationError

    from zhiku.config import Settings

    with pytest.raises(ValidationError, match="ocr_model"):
        Settings(ocr_model="medium")
    with pytest.raises(LoaderError, match="unknown OCR model 'medium'"):
        load(path, OcrOptions(model="medium"))  # type: ignore[arg-type]


# ---------------------------------------------------------------- PDF


def test_mixed_pdf_reads_only_its_textless_pages_by_ocr(tmp_path: Path) -> None:
    text1 = "Page one has a real text layer about river deltas."
    text3 = "Page three has a real text layer about coral reefs."
    path = image_pdf(tmp_path / "mixed.pdf", [text1, render([SCAN_PAGES[0]]), text3, render([SCAN_PAGES[1]])])
    seen: list[tuple[int, int]] = []
    doc = load_guarded(path, 120, 2**20, pages=lambda d, t: seen.append((d, t)))
    assert [s.page for s in doc.sections] == [1, 2, 3, 4]
    assert doc.warnings == ["page 2: read by OCR", "page 4: read by OCR"]
    assert seen[-1] == (2, 2)  # two pages were OCR-ed, not four
    assert doc.sections[0].text == text1 and doc.sections[2].text == text3  # the text layer, untouched
    assert similar(doc.sections[1].text, SCAN_PAGES[0]) >= 0.9
    assert similar(doc.sections[3].text, SCAN_PAGES[1]) >= 0.9

    off = load(path, OFF)  # OCR off: today's behaviour
    assert [s.page for s in off.sections] == [1, 3]
    assert off.warnings == ["page 2: no text — scanned?", "page 4: no text — scanned?"]
    scan = image_pdf(tmp_path / "scan.pdf", [render([SCAN_PAGES[0]])])
    with pytest.raises(LoaderError, match="no text layer on any of its 1 pages — scanned"):
        load(scan, OFF)
    capped = load(path, OcrOptions(max_pages=1))
    assert [s.page for s in capped.sections] == [1, 2, 3]
    assert capped.warnings == ["page 2: read by OCR", "1 pages without text not read: over the OCR cap of 1 "
                               "pages (ocr_max_pages), from page 4"]


# ---------------------------------------------------------------- through the knowledge base


def test_scans_and_pictures_are_ingested_and_found_with_their_page(home: Path, tmp_path: Path) -> None:
    from zhiku.config import Settings
    from zhiku.kb.service import KBService

    png, jpeg, tiff = io.BytesIO(), io.BytesIO(), io.BytesIO()
    render([ZHENG_HE, LIGHTHOUSE]).save(png, "PNG")
    render([DUJIANGYAN, GLACIER]).convert("RGB").save(jpeg, "JPEG", quality=85)
    first, *rest = [render([t], width=700) for t in TIFF_PAGES]
    first.save(tiff, "TIFF", save_all=True, append_images=rest)
    scan = image_pdf(tmp_path / "lease.pdf", [render([p]) for p in SCAN_PAGES]).read_bytes()
    blank = io.BytesIO()
    Image.new("L", (300, 200), 255).save(blank, "PNG")
    uploads = [("note.png", png.getvalue()), ("river.jpg", jpeg.getvalue()), ("sights.tif", tiff.getvalue()),
               ("lease.pdf", scan), ("blank.png", blank.getvalue()),
               ("cut.png", png.getvalue()[:2000]), ("bomb.png", png_bomb(tmp_path / "b.png").read_bytes())]
    svc = KBService(Settings(home=home, embedder="use-m3", ui=False, embed_threads=2))
    try:
        svc.create("scans", chunk_size=200, chunk_overlap=20)
        seen: list[tuple[str, int, int]] = []
        docs = {d.path: d for d in svc.add_uploads("scans", uploads, progress=lambda *a: seen.append(a))}
        for name in ("note.png", "river.jpg", "sights.tif"):
            assert docs[name].status == "ok" and docs[name].chunk_count >= 1, docs[name]
        assert docs["lease.pdf"].status == "warning", docs["lease.pdf"]
        assert docs["lease.pdf"].error == "page 1: read by OCR; page 2: read by OCR"
        assert docs["blank.png"].status == "failed" and docs["blank.png"].error == "OCR found no text in this image"
        assert docs["cut.png"].status == "failed" and "truncated" in (docs["cut.png"].error or "")
        assert docs["bomb.png"].status == "failed" and "decompression bomb" in (docs["bomb.png"].error or "")
        assert ("ocr", 3, 3) in seen and ("ocr", 2, 2) in seen  # page progress of the TIFF and the PDF

        def top(query: str) -> tuple[str, int | None]:
            hit = svc.search("scans", query, top_k=1)[0]
            return hit.document, hit.page

        assert top("郑和下西洋从哪里出发") == ("note.png", 1)
        assert top("Where was the lighthouse of Alexandria built?") == ("note.png", 1)
        assert top("都江堰是谁主持修建的") == ("river.jpg", 1)
        assert top("莫高窟保存了什么") == ("sights.tif", 2)
        assert top("Where does the Rhine flow to?") == ("sights.tif", 3)
        assert top("合同的有效期是几年") == ("lease.pdf", 1)
        assert top("How much notice must the tenant give before moving out?") == ("lease.pdf", 2)
    finally:
        svc.close()

    off = KBService(Settings(home=home, embedder="use-m3", ui=False, embed_threads=2, ocr=False))
    try:
        off.create("plain")
        docs = {d.path: d for d in off.add_uploads("plain", [("note.png", png.getvalue()), ("lease.pdf", scan)])}
        assert docs["note.png"].status == "failed" and "turned off" in (docs["note.png"].error or "")
        assert docs["lease.pdf"].status == "failed" and "scanned?" in (docs["lease.pdf"].error or "")
    finally:
        off.close()


def test_page_progress_reaches_the_upload_stream(home: Path, tmp_path: Path) -> None:
    """Over HTTP: an image-only PDF uploaded with ?stream=true reports each OCR-ed page as an "ocr" line."""
    import json

    import httpx

    from conftest import running
    from zhiku.config import Settings
    from zhiku.server.app import create_app

    scan = image_pdf(tmp_path / "lease.pdf", [render([p]) for p in SCAN_PAGES]).read_bytes()
    with running(create_app(Settings(home=home, embedder="use-m3", ui=False), preload=False)) as base:
        httpx.post(f"{base}/api/kb", json={"name": "scans"}, timeout=60).raise_for_status()
        with httpx.stream("POST", f"{base}/api/kb/scans/documents", params={"stream": "true"},
                          files=[("files", ("lease.pdf", scan, "application/pdf"))], timeout=300) as r:
            assert r.status_code == 200
            events = [json.loads(line) for line in r.iter_lines() if line]
        pages = [(e["done"], e["total"]) for e in events if e.get("what") == "ocr"]
        assert pages[0] == (0, 2) and pages[-1] == (2, 2), events
        stored = next(e["document"] for e in events if "document" in e)
        assert stored["status"] == "warning" and stored["error"] == "page 1: read by OCR; page 2: read by OCR"
        hits = httpx.post(f"{base}/api/kb/scans/search", json={"query": "tenant notice before moving out",
                                                              "top_k": 1}, timeout=60).json()
        assert hits[0]["page"] == 2, hits
        # Chatchat's recreate_vector_store reads the scan again: one object per OCR-ed page, then the file's,
        # each a whole JSON object per write (read as Chatchat's ApiRequest reads: json.loads per piece).
        with httpx.stream("POST", f"{base}/knowledge_base/recreate_vector_store", timeout=300,
                          json={"knowledge_base_name": "scans"}) as r:
            objects = [json.loads(piece) for piece in r.iter_text(None) if piece]
        pages = [(o["ocr"]["done"], o["ocr"]["total"]) for o in objects if "ocr" in o]
        assert pages[0] == (0, 2) and pages[-1] == (2, 2), objects
        assert objects[1]["msg"] == "(1 / 1): lease.pdf: OCR 1 / 2 pages" and objects[1]["finished"] == 0
        assert objects[-1] == {"code": 200, "msg": "(1 / 1): lease.pdf", "total": 1, "finished": 1, "doc": "lease.pdf"}


# ---------------------------------------------------------------- pictures on pages with text (issue 20)

DELTA = "Page one has a real text layer about river deltas."
FIGURE = "Figure two: the reservoir holds forty million cubic metres of water."


def text_and_picture_pdf(path: Path, pages: list[tuple[str, Image.Image]]) -> Path:
    """Each page: a line of real text (Helvetica) and below it an embedded picture (a figure, a screenshot)."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text, picture in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
        pdf.image(picture, x=10, y=40, w=190)
    pdf.output(str(path))
    return path


def test_pictures_on_text_pages_are_read_once_and_can_be_turned_off(tmp_path: Path) -> None:
    path = text_and_picture_pdf(tmp_path / "report.pdf", [(DELTA, render([FIGURE])),
                                                          (LIGHTHOUSE, render([LIGHTHOUSE]))])
    seen: list[tuple[int, int]] = []
    doc = load_guarded(path, 120, 2**20, pages=lambda d, t: seen.append((d, t)))
    assert [s.page for s in doc.sections] == [1, 2]
    first, picture = doc.sections[0].text.split("\n\n")
    assert first == DELTA and similar(picture, FIGURE) >= 0.9, doc.sections[0].text
    # Page 2's picture says what its text layer says: read, but not added a second time.
    assert doc.sections[1].text == LIGHTHOUSE
    assert doc.warnings == ["page 1: picture read by OCR"]
    assert seen[-1] == (2, 2)  # both pictures were read, not the pages

    for off in (OcrOptions(pictures=False), OFF):
        plain = load_guarded(path, 120, 2**20, ocr=off)
        assert [s.text for s in plain.sections] == [DELTA, LIGHTHOUSE] and plain.warnings == []
    from zhiku.config import Settings

    assert Settings().ocr_pictures is True and Settings(ocr_pictures=False).ocr_pictures is False


def test_small_pictures_on_text_pages_are_left_alone(tmp_path: Path) -> None:
    icon = Image.new("L", (16, 16), 0)  # a bullet or logo: below the minimum size, never handed to OCR
    path = text_and_picture_pdf(tmp_path / "icon.pdf", [(DELTA, icon)])
    seen: list[tuple[int, int]] = []
    doc = load(path, pages=lambda d, t: seen.append((d, t)))
    assert [s.text for s in doc.sections] == [DELTA] and doc.warnings == [] and seen == []


def test_ocr_boxes_apart_on_one_line_keep_a_separator(tmp_path: Path) -> None:
    font = ImageFont.truetype(FONT, 28)
    img = Image.new("L", (1000, 80), 255)
    draw = ImageDraw.Draw(img)
    draw.text((30, 20), "English text", font=font, fill=0)
    draw.text((650, 20), "横向文本框", font=font, fill=0)  # a second box, far to the right
    path = tmp_path / "boxes.png"
    img.save(path)
    text = load(path).sections[0].text
    assert "text横向" not in text and similar(text, "English text横向文本框") >= 0.9, text
    assert paragraphs([Box(0, 0, 200, 20, "English text"), Box(400, 0, 500, 20, "竖向文本框")]) == \
        ["English text 竖向文本框"]
    assert paragraphs([Box(0, 0, 100, 20, "相邻的"), Box(104, 0, 200, 20, "两个框")]) == ["相邻的两个框"]
