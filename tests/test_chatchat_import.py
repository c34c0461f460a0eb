"""`zhiku kb import-chatchat`: a Langchain-Chatchat 0.2.7 knowledge_base folder, built the way Chatchat leaves it
(info.db with Chatchat's tables written by sqlite3; Chinese md, docx, pdf and xlsx files written by their real
libraries; a pickled FAISS index that must never be opened), imported with the real use-m3 embedder."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docx
import pytest
from fpdf import FPDF
from openpyxl import Workbook

from zhiku.config import Settings
from zhiku.kb.chatchat_import import ChatchatImportError, import_folder, read_info_db
from zhiku.kb.service import KBService

CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")

# Chatchat 0.2.7's tables as SQLAlchemy creates them (server/db/models/*.py).
CHATCHAT_SCHEMA = """
CREATE TABLE knowledge_base (id INTEGER NOT NULL PRIMARY KEY, kb_name VARCHAR(50), kb_info VARCHAR(200),
    vs_type VARCHAR(50), embed_model VARCHAR(50), file_count INTEGER, create_time DATETIME);
CREATE TABLE knowledge_file (id INTEGER NOT NULL PRIMARY KEY, file_name VARCHAR(255), file_ext VARCHAR(10),
    kb_name VARCHAR(50), document_loader_name VARCHAR(50), text_splitter_name VARCHAR(50), file_version INTEGER,
    file_mtime FLOAT, file_size INTEGER, custom_docs BOOLEAN, docs_count INTEGER, create_time DATETIME);
CREATE TABLE file_doc (id INTEGER NOT NULL PRIMARY KEY, kb_name VARCHAR(50), file_name VARCHAR(255),
    doc_id VARCHAR(50), meta_data JSON);
CREATE TABLE chat_history (id VARCHAR(32) NOT NULL PRIMARY KEY, chat_type VARCHAR(50), query VARCHAR(4096),
    response VARCHAR(4096), meta_data JSON, feedback_score INTEGER, feedback_reason VARCHAR(255), create_time DATETIME);
"""
POLICY = "# 差旅报销政策\n\n## 住宿标准\n\n员工出差住宿标准为每晚不超过四百五十元，一线城市可上浮至六百元。\n"
CONTRACT = "采购合同约定：乙方应在收到订单后十五个工作日内交付全部设备，付款期限为验收合格后三十天。"
MANUAL = "设备维护手册：空气压缩机每运行五百小时需要更换一次滤芯，并检查皮带的张紧度。"
BRIDGE = "# 工程日志\n\n跨江大桥的主塔高度为二百一十米，于二零一九年合龙。\n"


def build_chatchat_folder(root: Path, marker: Path) -> None:
    samples = root / "samples" / "content"
    (samples / "合同").mkdir(parents=True)
    (samples / "政策.md").write_text(POLICY, encoding="utf-8")
    doc = docx.Document()
    doc.add_heading("采购合同", level=1)
    doc.add_paragraph(CONTRACT)
    doc.save(str(samples / "合同" / "采购合同.docx"))
    pdf = FPDF()
    pdf.add_font("wqy", fname=str(CJK_FONT))
    pdf.set_font("wqy", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, MANUAL)
    pdf.output(str(samples / "手册.pdf"))
    wb = Workbook()
    ws = wb.active
    ws.title = "价格"
    for row in (("名称", "单价"), ("苹果", 3.5), ("香蕉", 2.8)):
        ws.append(row)
    wb.save(str(samples / "价格表.xlsx"))
    (root / "工程" / "content").mkdir(parents=True)
    (root / "工程" / "content" / "桥梁.md").write_text(BRIDGE, encoding="utf-8")
    (root / "旧 知识库" / "content").mkdir(parents=True)
    (root / "旧 知识库" / "content" / "a.txt").write_text("旧文件", encoding="utf-8")
    # A honeypot where Chatchat keeps its FAISS index: unpickling it would create `marker`.
    for kb in ("samples", "工程"):
        store = root / kb / "vector_store" / "bge-large-zh"
        store.mkdir(parents=True)
        (store / "index.faiss").write_bytes(b"\x00" * 64)
        (store / "index.pkl").write_bytes(f"c__builtin__\nopen\n(V{marker}\nVw\ntR.".encode())
    conn = sqlite3.connect(root / "info.db")
    conn.executescript(CHATCHAT_SCHEMA)
    conn.executemany("INSERT INTO knowledge_base (kb_name, kb_info, vs_type, embed_model, file_count, create_time) "
                     "VALUES (?, ?, 'faiss', 'bge-large-zh', ?, '2023-12-01 10:00:00')",
                     [("samples", "公司制度与合同", 5), ("工程", "桥梁工程资料", 1), ("旧 知识库", "", 1)])
    files = [("samples", "政策.md", 0), ("samples", "合同\\采购合同.docx", 0), ("samples", "手册.pdf", 1),
             ("samples", "价格表.xlsx", 0), ("samples", "已删除.txt", 0), ("工程", "桥梁.md", 0), ("旧 知识库", "a.txt", 0)]
    conn.executemany("INSERT INTO knowledge_file (file_name, file_ext, kb_name, document_loader_name, "
                     "text_splitter_name, file_version, file_mtime, file_size, custom_docs, docs_count, create_time) "
                     "VALUES (?, '', ?, 'UnstructuredFileLoader', 'ChineseRecursiveTextSplitter', 1, 0, 0, ?, 1, "
                     "'2023-12-01 10:00:00')", [(f, kb, custom) for kb, f, custom in files])
    conn.commit()
    conn.close()


@pytest.fixture
def watched_opens() -> Iterator[list[str]]:
    """Every file this process opens under a vector_store folder (a Python audit hook sees all opens)."""
    seen: list[str] = []
    active = [True]

    def hook(event: str, args: tuple[object, ...]) -> None:
        if active[0] and event == "open" and args and "vector_store" in str(args[0]):
            seen.append(str(args[0]))

    sys.addaudithook(hook)  # hooks cannot be removed: this one goes quiet after the test
    yield seen
    active[0] = False


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ZHIKU_HOME": str(home), "ZHIKU_EMBEDDER": "use-m3", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "zhiku", "kb", "import-chatchat", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_import_chatchat_folder(home: Path, tmp_path: Path, watched_opens: list[str]) -> None:
    root, marker = tmp_path / "knowledge_base", tmp_path / "unpickled"
    build_chatchat_folder(root, marker)
    watched_opens.clear()  # the test itself wrote the index files
    kb = KBService(Settings(home=home, embedder="use-m3"))
    try:
        seen: list[str] = []
        reports = {r.name: r for r in import_folder(kb, root, on_base=lambda b: seen.append(b.name))}
        assert seen == ["samples", "工程", "旧 知识库"]
        samples = reports["samples"]
        assert samples.created and sorted(samples.added) == ["价格表.xlsx", "合同/采购合同.docx", "手册.pdf", "政策.md"]
        assert samples.missing == ["已删除.txt"] and samples.failed == {} and not samples.ok
        assert any("hand-made chunks" in n for n in samples.notes) and any("bge-large-zh" in n for n in samples.notes)
        assert reports["工程"].ok and reports["工程"].added == ["桥梁.md"]
        assert "refuses the name" in (reports["旧 知识库"].error or "")
        infos = {k.name: k for k in kb.list()}
        assert set(infos) == {"samples", "工程"}
        assert infos["samples"].description == "公司制度与合同" and infos["工程"].description == "桥梁工程资料"
        assert infos["samples"].documents == 4 and infos["samples"].embedder == "use-m3"
        for query, expected, fact in (("出差住宿标准每晚多少钱", "政策.md", "四百五十元"),
                                      ("采购合同的付款期限是多久", "合同/采购合同.docx", "三十天"),
                                      ("空气压缩机多久更换滤芯", "手册.pdf", "五百小时"),
                                      ("香蕉的单价", "价格表.xlsx", "2.8")):
            top = kb.search("samples", query, top_k=1)[0]
            assert top.document == expected and fact in top.text, (query, top)
        assert kb.search("工程", "大桥主塔有多高", top_k=1)[0].document == "桥梁.md"
    finally:
        kb.close()
    assert not marker.exists() and watched_opens == []  # the FAISS pickle was never opened
    # A second run (the command, as a user runs it) adds nothing and still reports what is wrong.
    again = cli(home, str(root))
    assert again.returncode == 1, again.stderr
    assert "samples: 0 added, 0 updated, 4 already in, 0 failed, 1 missing" in again.stdout
    assert "工程: 0 added, 0 updated, 1 already in" in again.stdout
    assert "已删除.txt is listed in info.db but not in content/" in again.stderr
    assert "旧 知识库: skipped: zhiku refuses the name" in again.stderr and "Traceback" not in again.stderr
    only = cli(home, str(root / "info.db"), "--kb", "工程", "-q")
    assert only.returncode == 0 and "工程: 0 added" in only.stdout and "samples" not in only.stdout + only.stderr
    assert not marker.exists()


def test_import_refuses_what_is_not_a_chatchat_folder(home: Path, tmp_path: Path) -> None:
    with pytest.raises(ChatchatImportError, match="no info.db"):
        read_info_db(tmp_path)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    conn = sqlite3.connect(foreign / "info.db")
    conn.execute("CREATE TABLE knowledge_base (id INTEGER PRIMARY KEY, name TEXT)")
    conn.close()
    out = cli(home, str(foreign))
    assert out.returncode == 1 and "is not a Langchain-Chatchat info.db" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "info.db").write_bytes(b"this is not sqlite" * 100)
    out = cli(home, str(tmp_path / "junk"))
    assert out.returncode == 1 and "not a readable SQLite database" in out.stderr
    root = tmp_path / "knowledge_base"
    build_chatchat_folder(root, tmp_path / "unpickled")
    out = cli(home, str(root), "--kb", "nope", "-q")
    assert out.returncode == 1 and "nope: not in" in out.stderr and "samples" in out.stderr
