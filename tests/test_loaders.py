"""Every supported format, written in the test by its real writer library, in Chinese and English, read back:
the known text, pages and heading trails must come out."""

from __future__ import annotations

import email.utils
import json
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import docx
import pytest
from ebooklib import epub
from fpdf import FPDF
from openpyxl import Workbook
from pptx import Presentation
from pptx.util import Inches

from zhiku.kb.loaders import SUPPORTED_SUFFIXES, LoadedDoc, LoaderError, Section, load, load_guarded
from zhiku.kb.loaders.ocr import OcrOptions

CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")
ZH = "知识库问答系统可以在普通电脑上离线运行，不需要显卡。"
EN = "The knowledge base answers questions offline on an ordinary CPU."


def texts(doc: LoadedDoc) -> str:
    return "\n".join(s.text for s in doc.sections)


def by_heading(doc: LoadedDoc) -> dict[tuple[str, ...], str]:
    return {tuple(s.heading): s.text for s in doc.sections}


def write_pdf(path: Path, pages: list[str]) -> Path:
    """One page per string; an empty string makes a page with no text layer (like a scan)."""
    pdf = FPDF()
    pdf.add_font("wqy", fname=str(CJK_FONT))
    pdf.set_font("wqy", size=12)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


# ---------------------------------------------------------------- plain text and markup


def test_text_in_utf8_bom_and_gb18030(tmp_path: Path) -> None:
    body = f"{ZH}\n{EN}\n"
    (tmp_path / "u.txt").write_text(body, encoding="utf-8")
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    (tmp_path / "gb.txt").write_bytes((ZH * 3 + "\n中文文件常常不是 UTF-8 编码，而是国标编码。\n").encode("gb18030"))
    for name in ("u.txt", "bom.txt"):
        doc = load(tmp_path / name)
        assert doc.loader == "text" and doc.warnings == []
        assert texts(doc) == body
        assert not texts(doc).startswith("\ufeff")
    gb = load(tmp_path / "gb.txt")
    assert ZH in texts(gb) and "国标编码" in texts(gb)
    assert gb.warnings == ["decoded as GB18030"]


@pytest.mark.parametrize(("text", "encoding", "reported"), [
    ("会议纪要", "gbk", "GB18030"),  # short GBK is where detectors guess Big5 or CP949
    ("北京市朝阳区", "gbk", "GB18030"),
    ("名称,价格\n苹果,3.5\n香蕉,2\n", "gb18030", "GB18030"),
    ("今天天气很好。", "big5", "BIG5"),
    ("Ceci est un résumé très détaillé.", "cp1252", "CP1252"),
    ("こんにちは、世界。日本語のテキストです。", "shift_jis", "CP932"),
])
def test_short_files_in_legacy_encodings(tmp_path: Path, text: str, encoding: str, reported: str) -> None:
    path = tmp_path / "short.txt"
    path.write_bytes(text.encode(encoding))
    doc = load(path)
    assert doc.sections[0].text == text
    assert doc.warnings == [f"decoded as {reported}"]


def test_markdown_headings_give_the_trail(tmp_path: Path) -> None:
    md = tmp_path / "guide.md"
    md.write_text(
        "# 总则\n\n第一条 为了规范管理，制定本办法。\n\n## 适用范围\n\n本办法适用于全体员工。\n\n"
        "```\n# not a heading inside code\n```\n\n# Appendix\n\nSetext Title\n------------\n\n" + EN + "\n",
        encoding="utf-8")
    doc = load(md)
    assert doc.loader == "markdown"
    sections = by_heading(doc)
    assert "第一条 为了规范管理" in sections[("总则",)]
    assert "本办法适用于全体员工" in sections[("总则", "适用范围")]
    assert "# not a heading inside code" in sections[("总则", "适用范围")]
    assert EN in sections[("Appendix", "Setext Title")]
    assert sections[("总则",)].startswith("# 总则")  # heading lines stay in the text


def test_rst_adornments_give_levels(tmp_path: Path) -> None:
    rst = tmp_path / "doc.rst"
    rst.write_text("=====\n手册\n=====\n\n简介文字。\n\n安装\n----\n\npip install zhiku\n\n使用\n----\n\n" + EN,
                   encoding="utf-8")
    sections = by_heading(load(rst))
    assert "简介文字" in sections[("手册",)]
    assert "pip install zhiku" in sections[("手册", "安装")]
    assert EN in sections[("手册", "使用")]


def test_html_drops_chrome_and_keeps_headings_and_tables(tmp_path: Path) -> None:
    page = tmp_path / "p.html"
    page.write_text(f"""<!doctype html><html><head><title>T</title><style>.x{{color:red}}</style>
<script>var secret = "SCRIPT-TEXT";</script></head><body>
<header><a href="/">SITE-HEADER</a></header><nav>NAV-MENU</nav>
<article><header><h1>产品说明</h1></header><p>{ZH}</p>
<h2>Details</h2><p>{EN}<br>Second line</p>
<table><tr><th>名称</th><th>价格</th></tr><tr><td>苹果</td><td>3.5</td></tr></table>
<h3>Deep</h3><ul><li>one</li><li>two</li></ul></article>
<footer>COPYRIGHT-FOOTER</footer><noscript>NOSCRIPT</noscript></body></html>""", encoding="utf-8")
    doc = load(page)
    all_text = texts(doc)
    for dropped in ("SCRIPT-TEXT", "SITE-HEADER", "NAV-MENU", "COPYRIGHT-FOOTER", "color:red", "NOSCRIPT"):
        assert dropped not in all_text
    sections = by_heading(doc)
    assert ZH in sections[("产品说明",)]
    details = sections[("产品说明", "Details")]
    assert f"{EN}\nSecond line" in details and "名称 | 价格\n苹果 | 3.5" in details
    assert sections[("产品说明", "Details", "Deep")] == "Deep\none\ntwo"


def test_gbk_html(tmp_path: Path) -> None:
    page = tmp_path / "gbk.htm"
    page.write_bytes(f'<html><head><meta charset="gbk"></head><body><h1>公告</h1><p>{ZH * 3}</p></body></html>'
                     .encode("gbk"))
    doc = load(page)
    assert by_heading(doc)[("公告",)] == "公告\n" + ZH * 3


# ---------------------------------------------------------------- PDF


def test_pdf_pages_and_scanned_page_warning(tmp_path: Path) -> None:
    path = write_pdf(tmp_path / "a.pdf", [ZH, "", EN])
    doc = load(path)
    assert doc.loader == "pdf"
    assert [(s.page, s.text) for s in doc.sections] == [(1, ZH), (3, EN)]
    assert doc.warnings == ["page 2: no text, OCR found none"]  # blank: OCR read it and found nothing
    assert load(path, OcrOptions(enabled=False)).warnings == ["page 2: no text — scanned?"]


def test_pdf_without_any_text_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match="no text layer on any of its 2 pages"):
        load(write_pdf(tmp_path / "scan.pdf", ["", ""]))


# ---------------------------------------------------------------- Office formats


def test_docx_headings_paragraphs_and_tables(tmp_path: Path) -> None:
    d = docx.Document()
    d.add_heading("员工手册", level=0)
    d.add_heading("第一章 总则", level=1)
    d.add_paragraph(ZH)
    d.add_heading("1.1 适用范围", level=2)
    d.add_paragraph("本手册适用于全体员工。")
    table = d.add_table(rows=2, cols=2)
    for (r, c), v in {(0, 0): "假期", (0, 1): "天数", (1, 0): "年假", (1, 1): "15"}.items():
        table.cell(r, c).text = v
    d.add_heading("Chapter 2", level=1)
    d.add_paragraph(EN)
    d.save(str(tmp_path / "h.docx"))
    doc = load(tmp_path / "h.docx")
    assert doc.loader == "docx"
    sections = by_heading(doc)
    assert ZH in sections[("员工手册", "第一章 总则")]
    scope = sections[("员工手册", "第一章 总则", "1.1 适用范围")]
    assert scope == "1.1 适用范围\n本手册适用于全体员工。\n假期 | 天数\n年假 | 15"
    assert EN in sections[("员工手册", "Chapter 2")]


def test_pptx_slides_are_pages_with_titles(tmp_path: Path) -> None:
    prs = Presentation()
    s1 = prs.slides.add_slide(prs.slide_layouts[1])
    s1.shapes.title.text = "季度总结"
    s1.placeholders[1].text = ZH
    s1.notes_slide.notes_text_frame.text = "讲者备注：强调离线。"
    s2 = prs.slides.add_slide(prs.slide_layouts[5])
    s2.shapes.title.text = "Figures"
    tbl = s2.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    for (r, c), v in {(0, 0): "Metric", (0, 1): "Value", (1, 0): "hit@5", (1, 1): "0.93"}.items():
        tbl.cell(r, c).text = v
    box = s2.shapes.add_textbox(Inches(1), Inches(4), Inches(4), Inches(1))
    box.text_frame.text = EN
    prs.save(str(tmp_path / "s.pptx"))
    doc = load(tmp_path / "s.pptx")
    assert doc.loader == "pptx"
    assert [(s.page, s.heading) for s in doc.sections] == [(1, ["季度总结"]), (2, ["Figures"])]
    assert doc.sections[0].text == f"季度总结\n{ZH}\n讲者备注：强调离线。"
    assert doc.sections[1].text == f"Figures\nMetric | Value\nhit@5 | 0.93\n{EN}"


def test_xlsx_rows_carry_their_header(tmp_path: Path) -> None:
    wb = Workbook()
    ws = wb.active
    ws.title = "价格表"
    ws.append(["名称", "价格", "产地"])
    ws.append(["苹果", 3.5, "山东"])
    ws.append([None, None, None])
    ws.append(["香蕉", 2, None])
    en = wb.create_sheet("People")
    en.append(["Name", "Joined"])
    en.append(["Ada", datetime(2024, 5, 1)])
    wb.save(tmp_path / "t.xlsx")
    doc = load(tmp_path / "t.xlsx")
    assert doc.loader == "xlsx"
    assert by_heading(doc) == {
        ("价格表",): "名称 | 价格 | 产地\n名称: 苹果; 价格: 3.5; 产地: 山东\n名称: 香蕉; 价格: 2",
        ("People",): "Name | Joined\nName: Ada; Joined: 2024-05-01",
    }


def test_csv_tsv_and_a_gbk_csv(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text('name,note\nAda,"first, programmer"\n', encoding="utf-8")
    (tmp_path / "b.tsv").write_text("城市\t人口\n北京\t2189万\n", encoding="utf-8")
    # Excel on Chinese Windows saves CSV in GBK.
    (tmp_path / "c.csv").write_bytes("城市,简介\n杭州,西湖所在的城市，风景优美。\n苏州,园林之城，历史悠久。\n".encode("gbk"))
    assert texts(load(tmp_path / "a.csv")) == "name | note\nname: Ada; note: first, programmer"
    assert texts(load(tmp_path / "b.tsv")) == "城市 | 人口\n城市: 北京; 人口: 2189万"
    gbk = load(tmp_path / "c.csv")
    assert "城市: 杭州; 简介: 西湖所在的城市，风景优美。" in texts(gbk)


def test_json_and_jsonl_records_are_flattened(tmp_path: Path) -> None:
    records = [{"问题": "如何安装？", "答案": "运行 pip install zhiku", "tags": ["安装", "入门"]},
               {"question": "Offline?", "meta": {"source": "faq", "score": 1.5, "ok": True}}]
    (tmp_path / "faq.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    doc = load(tmp_path / "faq.json")
    assert texts(doc) == ("问题: 如何安装？\n答案: 运行 pip install zhiku\ntags: 安装, 入门\n\n"
                          "question: Offline?\nmeta.source: faq\nmeta.score: 1.5\nmeta.ok: true")
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    (tmp_path / "faq.jsonl").write_text(lines[0] + "\n{broken\n\n" + lines[1] + "\n", encoding="utf-8")
    jl = load(tmp_path / "faq.jsonl")
    assert texts(jl) == texts(doc)
    assert jl.warnings == ["1 lines are not valid JSON and were skipped: 2"]


def test_epub_chapters_in_reading_order(tmp_path: Path) -> None:
    book = epub.EpubBook()
    book.set_identifier("zhiku-test")
    book.set_title("测试之书")
    book.set_language("zh")
    c1 = epub.EpubHtml(title="第一章", file_name="c1.xhtml", lang="zh")
    c1.content = f"<html><body><h1>第一章 起源</h1><p>{ZH}</p><h2>小节</h2><p>小节内容。</p></body></html>"
    c2 = epub.EpubHtml(title="Chapter Two", file_name="c2.xhtml", lang="en")
    c2.content = f"<html><body><p>{EN}</p></body></html>"  # no heading: the table of contents names it
    book.add_item(c1)
    book.add_item(c2)
    book.toc = (epub.Link("c1.xhtml", "第一章", "c1"), epub.Link("c2.xhtml", "Chapter Two", "c2"))
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", c1, c2]
    epub.write_epub(str(tmp_path / "b.epub"), book)
    doc = load(tmp_path / "b.epub")
    assert doc.loader == "epub"
    assert [(s.heading, s.text) for s in doc.sections] == [
        (["第一章 起源"], f"第一章 起源\n{ZH}"),
        (["第一章 起源", "小节"], "小节\n小节内容。"),
        (["Chapter Two"], EN),
    ]


def test_eml_plain_html_fallback_and_attachments(tmp_path: Path) -> None:
    date = email.utils.format_datetime(datetime(2024, 3, 1, 9, 30, tzinfo=UTC))
    m = EmailMessage()
    m["Subject"] = "季度报告"
    m["From"] = "张三 <zhang@example.com>"
    m["To"] = "team@example.com"
    m["Date"] = date
    m.set_content(f"{ZH}\n{EN}\n")
    m.add_alternative("<p>HTML VERSION</p>", subtype="html")
    m.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="附件.pdf")
    (tmp_path / "a.eml").write_bytes(bytes(m))
    doc = load(tmp_path / "a.eml")
    assert doc.loader == "eml"
    assert doc.sections == [Section(
        f"Subject: 季度报告\nFrom: 张三 <zhang@example.com>\nTo: team@example.com\nDate: {date}\n\n{ZH}\n{EN}",
        None, ["季度报告"])]
    assert doc.warnings == ["attachments not indexed: 附件.pdf"]

    h = EmailMessage()
    h["Subject"] = "Newsletter"
    h.set_content(f"<html><body><h1>News</h1><p>{EN}</p><script>x()</script></body></html>", subtype="html")
    (tmp_path / "h.eml").write_bytes(bytes(h))
    assert texts(load(tmp_path / "h.eml")) == f"Subject: Newsletter\n\nNews\n{EN}"


# ---------------------------------------------------------------- refusals and the guarded path


def test_unsupported_and_empty_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "x.xyz").write_text("data", encoding="utf-8")
    (tmp_path / "noext").write_text("data", encoding="utf-8")
    (tmp_path / "empty.md").write_bytes(b"")
    (tmp_path / "blank.txt").write_text(" \n\t\n", encoding="utf-8")
    with pytest.raises(LoaderError, match=r"^unsupported file type \.xyz$"):
        load(tmp_path / "x.xyz")
    with pytest.raises(LoaderError, match=r"unsupported file type \(no extension\)"):
        load(tmp_path / "noext")
    with pytest.raises(LoaderError, match="^empty file$"):
        load(tmp_path / "empty.md")
    with pytest.raises(LoaderError, match="no text found"):
        load(tmp_path / "blank.txt")
    with pytest.raises(LoaderError, match="not found"):
        load(tmp_path / "missing.txt")
    assert {".txt", ".md", ".markdown", ".rst", ".html", ".htm", ".pdf", ".docx", ".pptx", ".xlsx", ".csv",
            ".tsv", ".json", ".jsonl", ".epub", ".eml", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff",
            ".webp"} == SUPPORTED_SUFFIXES


def test_guarded_load_returns_what_load_returns(tmp_path: Path) -> None:
    md = tmp_path / "g.markdown"
    md.write_text(f"# 标题\n\n{ZH}\n\n## Sub\n\n{EN}\n", encoding="utf-8")
    pdf = write_pdf(tmp_path / "g.pdf", [ZH, ""])
    for path in (md, pdf):
        assert load_guarded(path, timeout=60, max_unzipped_bytes=10 * 2**20) == load(path)
    with pytest.raises(LoaderError, match="unsupported file type .xyz"):
        load_guarded(tmp_path / "n.xyz", timeout=60, max_unzipped_bytes=2**20)
