"""A full disk under ZHIKU_HOME (issue 16 items 2 and 3): HTTP uploads answer 507 naming what was kept, and
the keep-alive connection stays usable; `zhiku kb add` prints the per-file report so far, one error line and
exits 1. The disk is a real, small tmpfs mounted for the test; where the machine cannot mount one (not root,
no CAP_SYS_ADMIN) the tests are skipped, saying so.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import running, settings_for
from zhiku.config import Settings
from zhiku.server.app import create_app

API = "/api/kb"
WORDS = ("harbour tide ferry lighthouse keeper ledger north gate bakery bread pilot boat dawn noon river "
         "bridge station pump monday quarterly figures report weather wind rain storm coast").split()


def text_file(path: Path, size: int, seed: int) -> Path:
    rnd = random.Random(seed)
    words = []
    total = 0
    while total < size:
        w = rnd.choice(WORDS)
        words.append(w)
        total += len(w) + 1
    path.write_text(" ".join(words))
    return path


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs: room for a knowledge base and a few files, not for many."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a full disk needs a small tmpfs, and mounting one needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): the full-disk tests need one")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill the disk up to `leave` free bytes with a filler file (deleted to make room again)."""
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    filler = disk / f"filler-{uuid.uuid4().hex}"
    with filler.open("wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def documents(db: Path) -> dict[str, tuple[int, int]]:
    """{path: (chunk_count recorded, chunks actually there)} straight from the database."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT d.path, d.chunk_count, (SELECT count(*) FROM chunk c WHERE c.document_id = d.id)"
                            " FROM document d").fetchall()
    return {p: (n, m) for p, n, m in rows}


def test_http_upload_on_a_full_disk_is_507_and_keeps_what_it_says(small_disk: Path, tmp_path: Path) -> None:
    home = small_disk / "home"
    settings = Settings(home=home, embedder="use-m3", ui=False)
    with running(create_app(settings, preload=False)) as base:
        httpx.post(base + API, json={"name": "full"}, timeout=60).raise_for_status()
        big = text_file(tmp_path / "big.txt", 1 << 20, seed=1).read_bytes()
        filler = fill(small_disk, leave=(1 << 20) * 3 // 2)  # room for the upload's copy, not for its original
        url = urlsplit(base)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=300)
        try:
            chunking = {"chunk_size": "100000", "chunk_overlap": "0"}
            files = [("files", ("small.txt", b"The ferry leaves at noon from the north gate.", "text/plain")),
                     ("files", ("big.txt", big, "text/plain"))]
            # Big chunks keep the embedding cheap once there is room: the test is about bytes, not chunks.
            req = httpx.Request("POST", base, files=files, data=chunking)  # httpx builds the multipart body; http.client sends it
            conn.request("POST", f"{API}/full/documents", body=req.read(),
                         headers={"Content-Type": req.headers["content-type"]})
            resp = conn.getresponse()
            reply = json.loads(resp.read())
            assert resp.status == 507, reply
            message = reply["error"]["message"]
            assert message.startswith("disk full") and "1 of 2 files were stored" in message and "small.txt" in message
            assert str(small_disk) not in message and ".upload-" not in message  # no server path for the client
            sock = conn.sock
            conn.request("GET", f"{API}/full/documents")
            resp = conn.getresponse()
            listed = json.loads(resp.read())
            assert resp.status == 200 and conn.sock is sock, "the connection must stay usable after a 507"
        finally:
            conn.close()
        assert [d["path"] for d in listed] == ["small.txt"]
        assert documents(home / "zhiku.db") == {"small.txt": (1, 1)}
        # Nothing half-copied is left holding the space, and with room again the same upload succeeds.
        assert not [p for p in (home / "kb" / "full").rglob("*") if p.name.endswith(".tmp")]
        filler.unlink()
        r = httpx.post(f"{base}{API}/full/documents", files=files, data=chunking, timeout=300)
        assert r.status_code == 200, r.text
        assert {d["path"]: d["status"] for d in r.json()} == {"small.txt": "ok", "big.txt": "ok"}


def zhiku_kb(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ZHIKU_HOME": str(home), "ZHIKU_EMBEDDER": "use-m3", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "zhiku", "kb", *args], env=env, capture_output=True, text=True,
                          timeout=600)


def test_cli_add_on_a_full_disk_reports_each_file_and_one_error_line(small_disk: Path, tmp_path: Path) -> None:
    home = small_disk / "home"
    assert zhiku_kb(home, "create", "full", "--chunk-size", "1000", "--chunk-overlap", "0").returncode == 0
    src = tmp_path / "docs"
    src.mkdir()
    files = [text_file(src / "a.txt", 2_000, 1), text_file(src / "b.txt", 3_000, 2),
             text_file(src / "c.txt", 600_000, 3), text_file(src / "d.txt", 2_000, 4)]
    # Room for c.txt's original (600 KB) but not for its ~600 chunks in the database (text, full-text
    # index and 2 KB vectors): SQLite itself finds the disk full, as a user's `kb add` did.
    filler = fill(small_disk, leave=1_000_000)
    out = zhiku_kb(home, "add", "full", *map(str, files), "--quiet")
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    error = out.stderr.strip()
    assert error.startswith("error: disk full") and "2 of 4 files were stored" in error, error
    assert "a.txt: ok" in out.stdout and "b.txt: ok" in out.stdout and "c.txt" not in out.stdout
    stored = documents(home / "zhiku.db")
    assert set(stored) == {"a.txt", "b.txt"} and all(n == m > 0 for n, m in stored.values()), stored
    # With room again, the same command stores the rest and says which files were already there.
    filler.unlink()
    again = zhiku_kb(home, "add", "full", *map(str, files), "--quiet")
    assert again.returncode == 0, again.stderr
    lines = {line.split("] ", 1)[1].split(":")[0]: line for line in again.stdout.splitlines() if "] " in line}
    assert "unchanged" in lines["a.txt"] and "unchanged" in lines["b.txt"]
    assert ": ok" in lines["c.txt"] and ": ok" in lines["d.txt"]


def test_cli_sync_on_a_full_disk_reports_each_file_and_one_error_line(small_disk: Path, tmp_path: Path) -> None:
    """`kb sync` as `kb add`: each file (removals too) reported as it is done, then one line naming what filled."""
    home = small_disk / "home"
    assert zhiku_kb(home, "create", "full", "--chunk-size", "1000", "--chunk-overlap", "0").returncode == 0
    src = tmp_path / "docs"
    src.mkdir()
    old = text_file(src / "old.txt", 1_000, 9)
    assert zhiku_kb(home, "sync", "full", str(src), "--quiet").returncode == 0
    old.unlink()
    text_file(src / "a.txt", 2_000, 1), text_file(src / "b.txt", 3_000, 2)
    text_file(src / "c.txt", 600_000, 3), text_file(src / "d.txt", 2_000, 4)
    filler = fill(small_disk, leave=1_000_000)  # room for c.txt's original, not for its chunks (see above)
    out = zhiku_kb(home, "sync", "full", str(src), "--quiet")
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    error = out.stderr.strip()
    assert error.startswith("error: disk full (") and error.endswith(f"(ZHIKU_HOME: {home})"), error
    assert "2 of 4 files were stored" in error, error
    assert "old.txt: removed" in out.stdout and "a.txt: ok" in out.stdout and "b.txt: ok" in out.stdout, out.stdout
    assert "] c.txt" not in out.stdout and "] d.txt" not in out.stdout
    stored = documents(home / "zhiku.db")
    assert set(stored) == {"a.txt", "b.txt"} and all(n == m > 0 for n, m in stored.values()), stored
    filler.unlink()
    again = zhiku_kb(home, "sync", "full", str(src), "--quiet")
    assert again.returncode == 0, again.stderr
    assert "a.txt: unchanged" in again.stdout and "c.txt: ok" in again.stdout and "d.txt: ok" in again.stdout
    assert "added: 2" in again.stdout and "unchanged: 2" in again.stdout


def test_cli_import_chatchat_on_a_full_disk_reports_each_file_and_one_error_line(small_disk: Path,
                                                                                 tmp_path: Path) -> None:
    """import-chatchat as kb add: each file reported as it is committed, one line for the full disk, exit 1."""
    home, root = small_disk / "home", tmp_path / "knowledge_base"
    content = root / "samples" / "content"
    content.mkdir(parents=True)
    text_file(content / "a.txt", 2_000, 1), text_file(content / "b.txt", 3_000, 2)
    text_file(content / "c.txt", 600_000, 3), text_file(content / "d.txt", 2_000, 4)
    with sqlite3.connect(root / "info.db") as conn:
        conn.executescript("CREATE TABLE knowledge_base (id INTEGER PRIMARY KEY, kb_name TEXT, kb_info TEXT);"
                           "CREATE TABLE knowledge_file (id INTEGER PRIMARY KEY, file_name TEXT, kb_name TEXT);"
                           "INSERT INTO knowledge_base (kb_name, kb_info) VALUES ('samples', '');")
    assert zhiku_kb(home, "create", "samples", "--chunk-size", "1000", "--chunk-overlap", "0").returncode == 0
    filler = fill(small_disk, leave=1_000_000)  # room for c.txt's original, not for its chunks (see above)
    out = zhiku_kb(home, "import-chatchat", str(root), "--quiet")
    assert out.returncode == 1, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert "Traceback" not in out.stderr and lines[0].startswith("importing samples") and len(lines) == 2, lines
    assert lines[1].startswith("error: disk full") and "2 of 4 files were stored" in lines[1], lines
    assert "a.txt: ok" in out.stdout and "b.txt: ok" in out.stdout and "] c.txt" not in out.stdout, out.stdout
    assert set(documents(home / "zhiku.db")) == {"a.txt", "b.txt"}
    filler.unlink()
    again = zhiku_kb(home, "import-chatchat", str(root), "--quiet")
    assert again.returncode == 0, again.stderr
    assert "a.txt: unchanged" in again.stdout and "c.txt: ok" in again.stdout
    assert "samples: 2 added, 0 updated, 2 already in, 0 failed, 0 missing" in again.stdout


def test_llm_chat_on_a_full_disk_answers_with_the_packaged_templates(small_disk: Path, smollm_path: Path) -> None:
    """prompts.toml is copied to ZHIKU_HOME on first use; on a full disk the copy fails, and chat must still
    answer (with the packaged templates), leaving no truncated copy that would not parse later."""
    home = small_disk / "home"
    app = create_app(settings_for(home, smollm_path))
    app.state.services.chat.store  # the history database exists before the disk fills  # noqa: B018
    with running(app) as base:
        filler = fill(small_disk, leave=0)
        r = httpx.post(base + "/api/chat/llm", timeout=300,
                       json={"query": "Say hello.", "stream": False, "save": False, "max_tokens": 4})
        assert r.status_code == 200, r.text
        assert r.json()["answer"] and r.json()["usage"]["completion_tokens"] >= 1
        assert not (home / "prompts.toml").exists() and not list(home.glob(".prompts.toml*"))
        filler.unlink()  # with room again, the copy is made for the user to edit
        r = httpx.post(base + "/api/chat/llm", timeout=300,
                       json={"query": "Say hello.", "stream": False, "save": False, "max_tokens": 4})
        assert r.status_code == 200 and (home / "prompts.toml").is_file()
