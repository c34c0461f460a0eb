"""Hostile uploads, round two (issue 16): duplicate names in one upload, over-long CJK names, RFC 5987 names,
binary files under a text suffix, runaway documents, upload progress, and names that differ only by case.

Each test drives a real server on loopback with real multipart bodies (raw bytes where a client would
normalise them) and checks what was stored, not only what was answered.
"""

from __future__ import annotations

import csv
import gzip
import http.client
import io
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import matplotlib
import pytest

from conftest import running
from zhiku.config import Settings
from zhiku.server.app import create_app

matplotlib.use("Agg")

API = "/api/kb"
CAP = 300  # chunks per document in this module's server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("hostile-kb") / "home"
    home.mkdir()
    settings = Settings(home=home, embedder="use-m3", ui=False, max_chunks_per_document=CAP)
    with running(create_app(settings, preload=False)) as base:
        for kb in ("dups", "names", "binary", "runaway", "progress"):
            httpx.post(base + API, json={"name": kb}, timeout=60).raise_for_status()
        yield base


def multipart(parts: list[tuple[bytes, bytes]]) -> tuple[bytes, str]:
    """A multipart body from (Content-Disposition value, data) pairs, bytes exactly as given."""
    boundary = uuid.uuid4().hex
    body = b""
    for disposition, data in parts:
        body += (f"--{boundary}\r\n".encode() + b"Content-Disposition: " + disposition
                 + b"\r\nContent-Type: application/octet-stream\r\n\r\n" + data + b"\r\n")
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def file_part(filename: str, data: bytes) -> tuple[bytes, bytes]:
    return b'form-data; name="files"; filename="' + filename.encode() + b'"', data


def png_bytes() -> bytes:
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


# --- item 1: two files with one name -------------------------------------------------------------------


def test_two_files_with_one_name_in_one_upload_are_both_kept(server: str) -> None:
    contents = [b"The north gate opens at six.", b"The south gate opens at nine.", b"The west gate never opens."]
    # The third name cleans to the same base name; the fourth part is literally named like a renamed one.
    names = ["report.txt", "report.txt", "dir/report.txt", "report (2).txt"]
    contents.append(b"A file that was already called report (2).")
    files = [("files", (n, c, "text/plain")) for n, c in zip(names, contents, strict=True)]
    with httpx.Client(base_url=f"{server}{API}/dups", timeout=120) as c:
        r = c.post("/documents", files=files)
        assert r.status_code == 200, r.text
        docs = r.json()
        assert [d["path"] for d in docs] == ["report.txt", "report (3).txt", "report (4).txt", "report (2).txt"]
        assert len({d["id"] for d in docs}) == 4 and all(d["status"] == "ok" for d in docs)
        # Every file reported as stored is stored, with its own bytes.
        listed = {d["id"]: d for d in c.get("/documents").json()}
        assert set(listed) == {d["id"] for d in docs}
        for d, data in zip(docs, contents, strict=True):
            assert c.get(f"/documents/{d['id']}/download").content == data
        # The same upload again changes nothing: the same documents, none duplicated.
        again = c.post("/documents", files=files).json()
        assert [d["id"] for d in again] == [d["id"] for d in docs]
        assert len(c.get("/documents").json()) == 4


# --- item 2 (uploads) and 7: names ---------------------------------------------------------------------


def test_a_300_character_cjk_name_is_cut_by_bytes_and_the_connection_stays_usable(server: str) -> None:
    name = "长城" * 150 + ".txt"  # 300 CJK characters: 900 bytes, far over the 255 a file system allows
    body, ctype = multipart([file_part(name, "长城是中国古代的军事防御工程。".encode())])
    url = urlsplit(server)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    try:
        conn.request("POST", f"{API}/names/documents", body=body, headers={"Content-Type": ctype})
        resp = conn.getresponse()
        reply = resp.read()
        assert resp.status == 200, reply[:300]
        [doc] = json.loads(reply)
        assert doc["path"].endswith(".txt") and doc["path"].startswith("长城长城")
        assert len(doc["path"].encode()) <= 200 and doc["status"] == "ok"
        sock = conn.sock
        # The next request rides the same keep-alive connection.
        conn.request("GET", f"{API}/names/documents/{doc['id']}/download")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == "长城是中国古代的军事防御工程。".encode()
        assert conn.sock is sock, "the server closed the keep-alive connection"
        # A refused request leaves it usable too.
        conn.request("POST", f"{API}/nope/documents", body=body, headers={"Content-Type": ctype})
        resp = conn.getresponse()
        assert resp.status == 404 and json.loads(resp.read())["error"]["message"]
        conn.request("GET", "/health")
        assert conn.getresponse().status == 200 and conn.sock is sock
    finally:
        conn.close()


def test_an_rfc5987_file_name_gets_a_clear_400(server: str) -> None:
    # RFC 7578 (section 4.2) forbids filename*= in multipart/form-data and python-multipart ignores it, so
    # such a part is a plain field: the answer must say so, not "Expected UploadFile, received: <class 'str'>".
    disposition = b"form-data; name=\"files\"; filename*=UTF-8''" + quote("报告.txt").encode()
    body, ctype = multipart([(disposition, b"Quarterly figures for the harbour.")])
    r = httpx.post(f"{server}{API}/names/documents", content=body, headers={"Content-Type": ctype}, timeout=120)
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert "filename*" in message and 'filename="' in message and "UploadFile" not in message
    # The same part with a plain filename= (raw UTF-8, as browsers send it) is read.
    body, ctype = multipart([file_part("报告.txt", b"Quarterly figures for the harbour.")])
    r = httpx.post(f"{server}{API}/names/documents", content=body, headers={"Content-Type": ctype}, timeout=120)
    assert r.status_code == 200 and [d["path"] for d in r.json()] == ["报告.txt"]


def test_a_part_without_any_file_name_is_a_clear_400(server: str) -> None:
    body, ctype = multipart([(b'form-data; name="files"', b"just a field")])
    r = httpx.post(f"{server}{API}/names/documents", content=body, headers={"Content-Type": ctype}, timeout=60)
    assert r.status_code == 400
    assert "not a file" in r.json()["error"]["message"]


def test_knowledge_base_names_that_differ_only_by_case_are_refused(server: str) -> None:
    assert httpx.post(server + API, json={"name": "Ledger"}, timeout=60).status_code == 201
    r = httpx.post(server + API, json={"name": "ledger"}, timeout=60)
    assert r.status_code == 400, r.text
    assert "only by letter case" in r.json()["error"]["message"] and "'Ledger'" in r.json()["error"]["message"]
    assert "ledger" not in {k["name"] for k in httpx.get(server + API, timeout=60).json()}


def test_the_name_dot_is_refused_for_what_it_is(server: str) -> None:
    r = httpx.post(server + API, json={"name": "."}, timeout=60)
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "'..'" not in message and "path of its own" in message


# --- item 6: binary content and runaway documents ------------------------------------------------------


def test_binary_content_under_a_text_suffix_is_refused_by_its_bytes(server: str) -> None:
    png = png_bytes()
    corpus = {
        "photo.txt": png,                                                 # a renamed PNG
        "export.csv": gzip.compress(b"name,price\napple,3\n" * 100),    # a compressed export
        "notes.md": bytes(range(256)) * 8,                                # raw bytes, no magic number
        "page.html": png,
        "fine.txt": b"A text file that happens to hold a form feed\f and an escape \x1b[0m.",
        "utf16.txt": "带 BOM 的 UTF-16 文本也是文本。".encode("utf-16"),
    }
    files = [("files", (n, d, "application/octet-stream")) for n, d in corpus.items()]
    r = httpx.post(f"{server}{API}/binary/documents", files=files, timeout=120)
    assert r.status_code == 200, r.text
    docs = {d["path"]: d for d in r.json()}
    assert docs["photo.txt"]["status"] == "failed" and "PNG image" in docs["photo.txt"]["error"]
    assert docs["page.html"]["status"] == "failed" and "PNG image" in docs["page.html"]["error"]
    assert docs["export.csv"]["status"] == "failed" and "gzip" in docs["export.csv"]["error"]
    assert docs["notes.md"]["status"] == "failed" and "binary content" in docs["notes.md"]["error"]
    for name in ("photo.txt", "export.csv", "notes.md", "page.html"):
        assert docs[name]["chunk_count"] == 0
    assert docs["fine.txt"]["status"] == "ok" and docs["utf16.txt"]["status"] == "ok"


def wide_csv(columns: int) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([f"column {i}" for i in range(columns)])
    w.writerow([f"value {i}" for i in range(columns)])
    return buf.getvalue().encode()


def test_a_runaway_document_is_refused_per_file_before_embedding(server: str) -> None:
    started = time.monotonic()
    r = httpx.post(f"{server}{API}/runaway/documents", timeout=300, files=[
        ("files", ("wide.csv", wide_csv(100_000), "text/csv")),
        ("files", ("small.txt", b"The ferry leaves at noon.", "text/plain"))])
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    docs = {d["path"]: d for d in r.json()}
    wide = docs["wide.csv"]
    assert wide["status"] == "failed" and wide["chunk_count"] == 0
    assert f"over the limit of {CAP} per document" in wide["error"] and "max_chunks_per_document" in wide["error"]
    assert docs["small.txt"]["status"] == "ok"
    # Thousands of chunks were never embedded: seconds, not minutes (use-m3 embeds ~150 chunks/s here).
    assert elapsed < 60, elapsed


def test_upload_progress_is_streamed(server: str) -> None:
    # Two phases (?wait=true): the files stored (searchable), then "embedded" events until every chunk has
    # its vector: the first at once, then after each batch (use-m3: at most 64 chunks) or each look at a
    # batch another worker embeds. More than two batches' worth of chunks stays under CAP.
    text = "\n\n".join(f"Paragraph {i} about the tides of the northern harbour and its ferries." for i in range(800))
    files = [("files", ("long.txt", text.encode(), "text/plain")), ("files", ("short.txt", b"One line.", "text/plain"))]
    with httpx.stream("POST", f"{server}{API}/progress/documents", params={"stream": "true", "wait": "true"},
                      files=files, timeout=300) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        events = [json.loads(line) for line in r.iter_lines() if line]
    chunk_events = [e for e in events if e.get("what") == "embedded"]
    assert chunk_events[-1]["done"] == chunk_events[-1]["total"] > 2 * 64  # the premise above holds
    assert len(chunk_events) >= 2
    assert [e["done"] for e in chunk_events] == sorted(e["done"] for e in chunk_events)
    stored = [e for e in events if "document" in e]
    assert [(e["document"]["path"], e["outcome"]) for e in stored] == [("long.txt", "added"), ("short.txt", "added")]
    assert events.index(stored[-1]) < events.index({"phase": "searchable"}) < events.index(chunk_events[0])
    assert events[-1] == {"done": True}
    # Uploading the same files again says so.
    with httpx.stream("POST", f"{server}{API}/progress/documents", params={"stream": "true"}, files=files,
                      timeout=300) as r:
        outcomes = [json.loads(line).get("outcome") for line in r.iter_lines() if line]
    assert [o for o in outcomes if o] == ["unchanged", "unchanged"]
    # A missing knowledge base is a plain 404, before any stream starts.
    r = httpx.post(f"{server}{API}/missing/documents", params={"stream": "true"}, files=files, timeout=60)
    assert r.status_code == 404 and r.json()["error"]["message"]


def test_limits_table_in_the_readme_names_the_chunk_cap() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "`max_chunks_per_document`" in readme
