"""Hostile input through the HTTP API: a corpus of broken files in one upload, and hostile names and paths.

The loaders have their own per-format tests (zip-bomb limits, parse timeouts, the 50 MB line and the
2,000-page PDF); here the whole path is exercised end to end: multipart -> KB service -> loaders -> store.
"""

from __future__ import annotations

import io
import os
import sqlite3
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fpdf import FPDF

from conftest import docx_bytes, running
from zhiku.config import Settings
from zhiku.server.app import create_app

API = "/api/kb"
CONTROL_EN = "The lighthouse keeper of Skerryvore logged every passing ship in a green ledger."
CONTROL_DOCX = "Quarterly maintenance of the pumping station is scheduled for the first Monday."
GB_TEXT = "龙井茶产于浙江省杭州市西湖一带，是中国十大名茶之一。罕见字𠀀也能编码。"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    home = tmp_path_factory.mktemp("hostile") / "home"
    home.mkdir()
    # A low decompression limit keeps the zip bomb cheap to build; the check is the same at any size.
    settings = Settings(home=home, embedder="use-m3", ui=False, max_unzipped_mb=20.0, parse_timeout=30.0)
    with running(create_app(settings, preload=False)) as base:
        yield base, home


# --- the corpus -------------------------------------------------------------------------------------


def pdf_bytes(pages: int = 3) -> bytes:
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for i in range(pages):
        pdf.add_page()
        pdf.multi_cell(0, 8, f"Page {i + 1}. Tide tables for the northern harbour, entry {i}. " * 10)
    return bytes(pdf.output())


def zip_bomb_docx(unpacked_mb: int = 100) -> bytes:
    """A .docx-shaped zip whose document.xml inflates ~1000x (100 MB from about 100 KB)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        with z.open("word/document.xml", "w", force_zip64=True) as f:
            block = b"\0" * (1 << 20)
            for _ in range(unpacked_mb):
                f.write(block)
    return buf.getvalue()


def hostile_corpus() -> dict[str, bytes]:
    rnd = os.urandom
    good_pdf = pdf_bytes()
    return {
        "control.txt": CONTROL_EN.encode(),
        "control.docx": docx_bytes("Station notes", CONTROL_DOCX),
        "truncated.pdf": good_pdf[: len(good_pdf) // 2],
        "random.pdf": rnd(20_000),
        "random.docx": rnd(20_000),
        "random.xlsx": rnd(20_000),
        "empty.txt": b"",
        "invalid-utf8.txt": b"Harbour log \xff\xfe start \xc3\x28 broken \xed\xa0\x80 surrogate end.\n" * 20,
        "gb18030.txt": GB_TEXT.encode("gb18030"),
        "bomb.docx": zip_bomb_docx(),
    }


def test_hostile_corpus_in_one_upload(server: tuple[str, Path]) -> None:
    base, _ = server
    corpus = hostile_corpus()
    with httpx.Client(base_url=base + API, timeout=300) as c:
        assert httpx.post(base + API, json={"name": "corpus"}, timeout=30).status_code == 201
        started = time.monotonic()
        r = c.post("/corpus/documents", files=[("files", (n, data, "application/octet-stream"))
                                               for n, data in corpus.items()])
        elapsed = time.monotonic() - started
        assert r.status_code == 200, r.text[:500]
        docs = {d["path"]: d for d in r.json()}
        assert set(docs) == set(corpus), "every file gets a row: ingested or failed with a reason"
        for name, d in docs.items():
            assert d["status"] in ("ok", "warning", "failed"), d
            if d["status"] == "failed":
                assert d["error"] and d["chunk_count"] == 0, d
            elif name != "empty.txt":
                assert d["chunk_count"] >= 1, d
        for bad in ("random.pdf", "random.docx", "random.xlsx", "bomb.docx"):
            assert docs[bad]["status"] == "failed", docs[bad]
        assert "limit" in docs["bomb.docx"]["error"], docs["bomb.docx"]  # refused for its size, not parsed
        assert elapsed < 120, "a bomb or a broken file must not stall the upload"

        # The good files in the same upload are whole and searchable; GB18030 was decoded, not mangled.
        for good in ("control.txt", "control.docx"):
            assert docs[good]["status"] == "ok", docs[good]
        for text_file, expected in (("gb18030.txt", "西湖"), ("invalid-utf8.txt", "Harbour log")):
            assert docs[text_file]["status"] in ("ok", "warning"), docs[text_file]  # a warning names the codec
            chunks = c.get(f"/corpus/documents/{docs[text_file]['id']}/chunks").json()
            assert expected in "".join(ch["text"] for ch in chunks), text_file
        hits = c.post("/corpus/search", json={"query": "lighthouse keeper ledger", "top_k": 1}).json()
        assert hits and hits[0]["document"] == "control.txt"
        hits = c.post("/corpus/search", json={"query": "pumping station maintenance", "top_k": 1}).json()
        assert hits and hits[0]["document"] == "control.docx"
        # Still answering, and the documents listing agrees with the upload's reply.
        assert httpx.get(base + "/health", timeout=10).status_code == 200
        listed = {d["path"]: d["status"] for d in c.get("/corpus/documents").json()}
        assert listed == {n: d["status"] for n, d in docs.items()}


# --- names and paths --------------------------------------------------------------------------------

HOSTILE_KB_NAMES = ["..", ".", "../evil", "/abs", "a/b", "a\\b", "a\x00b", "a\nb", "a\x1bb", "x" * 300,
                    "a\u2215b", "a\uff0fb", "a\u2044b", "\u202eevil", "", " "]


def files_tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def test_hostile_kb_names_are_refused(server: tuple[str, Path]) -> None:
    base, home = server
    before = files_tree(home.parent) | {p for p in home.parent.rglob("*") if p.is_dir()}
    with httpx.Client(base_url=base + API, timeout=60) as c:
        for name in HOSTILE_KB_NAMES:
            r = httpx.post(base + API, json={"name": name}, timeout=30)
            assert r.status_code in (400, 422), (name, r.status_code, r.text[:200])
            assert r.json()["error"]["message"]
        assert all(kb["name"] in ("corpus", "names") for kb in httpx.get(base + API, timeout=30).json())
        # The same names in the URL path: 4xx, never a 5xx and never a file touched.
        for raw in ("%2e%2e", "..%2f..%2fetc", "%00", "a%E2%88%95b", "%2fetc%2fpasswd"):
            r = c.get(f"/{raw}/documents")
            assert 400 <= r.status_code < 500, (raw, r.status_code)
    after = files_tree(home.parent) | {p for p in home.parent.rglob("*") if p.is_dir()}
    assert {p for p in after - before if "zhiku.db" not in p.name} == set()


def raw_upload(base: str, kb: str, filename: bytes, data: bytes) -> httpx.Response:
    """A multipart upload with the file name bytes exactly as given (clients would escape them)."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\n".encode() + b'Content-Disposition: form-data; name="files"; filename="'
            + filename + b'"\r\nContent-Type: text/plain\r\n\r\n' + data + f"\r\n--{boundary}--\r\n".encode())
    return httpx.post(f"{base}{API}/{kb}/documents", content=body, timeout=120,
                      headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


def test_hostile_upload_names_stay_inside_the_kb_folder(server: tuple[str, Path], tmp_path: Path) -> None:
    base, home = server
    outside = f"/tmp/zhiku-escape-{uuid.uuid4().hex}.txt"
    names = ["../../escape.txt", "..\\..\\win-escape.txt", outside, "a/b/c/deep.txt", "nul\x00byte.txt",
             "ctl\x01\x1b[31mred.txt", "tab\tand\x7fdel.txt", "x" * 400 + ".txt", "a\u2215..\u2215b.txt",
             "a\uff0f..\uff0fc.txt", "\u202etxt.exe", "...", "CON", ".hidden.txt"]
    httpx.post(base + API, json={"name": "names"}, timeout=30).raise_for_status()
    before = files_tree(home.parent)
    kept: dict[int, bytes] = {}
    for i, name in enumerate(names):
        data = f"upload number {i} about harbour number {i}".encode()
        r = raw_upload(base, "names", name.encode(), data)
        assert r.status_code < 500, (name, r.text[:200])
        if r.status_code >= 400:
            assert r.json()["error"]["message"]
            continue
        [doc] = r.json()
        stored = doc["path"]
        assert stored and not any(ch in stored for ch in "/\\\x00\u2215\uff0f") and ".." not in stored, stored
        assert all(ch.isprintable() for ch in stored) and len(stored.encode()) <= 255, stored
        if doc["status"] != "failed":  # a file that could not be read keeps its record, not its bytes
            kept[doc["id"]] = data
    assert len(kept) >= len(names) // 2, "most hostile names are sanitised, not refused"
    assert not Path(outside).exists()
    folder = (home / "kb" / "names").resolve()
    for p in files_tree(home.parent) - before:
        assert p.resolve().is_relative_to(folder) or p.name.startswith("zhiku.db"), p
    with httpx.Client(base_url=f"{base}{API}/names", timeout=30) as c:
        for doc_id, data in kept.items():
            assert c.get(f"/documents/{doc_id}/download").content == data
        # Another knowledge base's route cannot reach this one's documents.
        some_id = next(iter(kept))
        assert httpx.get(f"{base}{API}/corpus/documents/{some_id}/download", timeout=30).status_code == 404


def test_download_cannot_leave_the_kb_folder_even_if_the_store_is_tampered(server: tuple[str, Path],
                                                                           tmp_path: Path) -> None:
    # Tampering with the database and the files folder stands in for a bug or a hostile local user.
    base, home = server
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET outside the knowledge base")
    httpx.post(base + API, json={"name": "tamper"}, timeout=30).raise_for_status()
    ids = []
    for i in range(2):
        r = httpx.post(f"{base}{API}/tamper/documents", timeout=120,
                       files=[("files", (f"doc{i}.txt", f"harmless text {i}".encode(), "text/plain"))])
        ids.append(r.json()[0]["id"])
    rel = os.path.relpath(secret, home / "kb" / "tamper" / "files")
    with sqlite3.connect(home / "zhiku.db") as conn:
        conn.execute("UPDATE document SET path = ? WHERE id = ?", (rel, ids[0]))
    stored = next((home / "kb" / "tamper" / "files").rglob("doc1.txt"))
    stored.unlink()
    stored.symlink_to(secret)
    for doc_id in ids:
        r = httpx.get(f"{base}{API}/tamper/documents/{doc_id}/download", timeout=30)
        assert 400 <= r.status_code < 500 and b"TOP SECRET" not in r.content, (doc_id, r.status_code)
