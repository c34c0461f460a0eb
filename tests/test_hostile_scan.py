"""Folder scans (`zhiku kb add FOLDER`, `kb sync`, `kb import-chatchat`) on hostile folders: a symbolic link out
of the folder (to /etc/passwd and to a secret beside it), a linked folder outside, a dangling link and a FIFO
are reported per file and never read; a link to a file inside the folder is followed. Real CLI, real use-m3."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

SECRET = "The vault code is 7741 and must never leave this machine."


def zhiku_kb(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ZHIKU_HOME": str(home), "ZHIKU_EMBEDDER": "use-m3", "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "zhiku", "kb", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def stored_text(home: Path) -> tuple[set[str], str]:
    with sqlite3.connect(home / "zhiku.db") as conn:
        paths = {p for (p,) in conn.execute("SELECT path FROM document")}
        text = "\n".join(t for (t,) in conn.execute("SELECT text FROM chunk"))
    return paths, text


def hostile_folder(folder: Path, outside: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("The ferry leaves at noon from the north gate.")
    (outside / "secret.txt").write_text(SECRET)
    (outside / "private").mkdir()
    (outside / "private" / "diary.md").write_text(SECRET)
    (folder / "passwd.txt").symlink_to("/etc/passwd")
    (folder / "secret.md").symlink_to(outside / "secret.txt")
    (folder / "escape").symlink_to(outside / "private")
    (folder / "same-notes.txt").symlink_to(folder / "notes.txt")  # inside the folder: followed
    (folder / "gone.txt").symlink_to(folder / "missing.txt")
    os.mkfifo(folder / "pipe.txt")  # reading it would block forever


NOT_READ = {"passwd.txt": "/etc/passwd, outside the folder: not followed",
            "secret.md": "outside the folder: not followed",
            "escape": "a symbolic link to the folder",
            "gone.txt": "target is missing",
            "pipe.txt": "not a regular file"}


def assert_reported(out: str) -> None:
    for name, why in NOT_READ.items():
        line = next((ln for ln in out.splitlines() if f"] {name}: " in ln), "")
        assert "not read" in line and why in line, (name, out)


@pytest.mark.skipif(not Path("/etc/passwd").is_file(), reason="needs /etc/passwd to link to")
def test_add_and_sync_do_not_follow_links_out_of_the_folder(tmp_path: Path) -> None:
    home, folder = tmp_path / "home", tmp_path / "docs"
    hostile_folder(folder, tmp_path)
    assert zhiku_kb(home, "create", "scan").returncode == 0
    added = zhiku_kb(home, "add", "scan", str(folder), "--quiet")
    assert added.returncode == 0, added.stderr
    assert_reported(added.stdout)
    assert "notes.txt: ok" in added.stdout and "same-notes.txt: ok" in added.stdout
    paths, text = stored_text(home)
    assert paths == {"notes.txt", "same-notes.txt"} and "root:" not in text and "vault" not in text
    synced = zhiku_kb(home, "sync", "scan", str(folder), "--quiet")
    assert synced.returncode == 0, synced.stderr
    assert_reported(synced.stdout)
    assert "unchanged: 2" in synced.stdout and "skipped: 5" in synced.stdout and "5 not read" in synced.stderr
    assert stored_text(home)[0] == {"notes.txt", "same-notes.txt"}


def test_import_chatchat_does_not_follow_links_out_of_content(tmp_path: Path) -> None:
    root, home = tmp_path / "knowledge_base", tmp_path / "home"
    content = root / "samples" / "content"
    hostile_folder(content, tmp_path)
    (root / "linked").mkdir()
    (root / "linked" / "content").symlink_to(tmp_path / "private")  # a whole content folder leading out
    with sqlite3.connect(root / "info.db") as conn:
        conn.executescript("CREATE TABLE knowledge_base (id INTEGER PRIMARY KEY, kb_name VARCHAR(50), kb_info TEXT);"
                           "CREATE TABLE knowledge_file (id INTEGER PRIMARY KEY, file_name TEXT, kb_name TEXT);")
        conn.execute("INSERT INTO knowledge_base (kb_name, kb_info) VALUES ('samples', '')")
        conn.execute("INSERT INTO knowledge_base (kb_name, kb_info) VALUES ('linked', '')")
        conn.executemany("INSERT INTO knowledge_file (file_name, kb_name) VALUES (?, 'samples')",
                         [("notes.txt",), ("secret.md",)])
    out = zhiku_kb(home, "import-chatchat", str(root), "--quiet")
    assert out.returncode == 1, (out.stdout, out.stderr)  # some files were not imported: it says so
    for name, why in NOT_READ.items():
        line = next((ln for ln in out.stderr.splitlines() if f"failed: {name}: " in ln), "")
        assert why in line, (name, out.stderr)
    assert f"linked: skipped: its folder {root / 'linked' / 'content'} is a link to {tmp_path / 'private'}, " \
        f"outside {root}: not followed" in out.stderr, out.stderr
    paths, text = stored_text(home)
    assert paths == {"notes.txt", "same-notes.txt"} and "vault" not in text and "root:" not in text


def test_a_folder_scan_accounts_for_every_entry_it_passes_over(tmp_path: Path) -> None:
    """Unsupported types, a Windows stream name, a file named `--`, hidden files and folders: each listed with
    its reason, and the summary counts every entry (issue 20: 9 entries were reported as 6)."""
    home, folder = tmp_path / "home", tmp_path / "docs"
    folder.mkdir()
    for i in range(6):
        (folder / f"note{i}.txt").write_text(f"Note {i}: the ferry leaves at noon from gate {i}.")
    odd = {"unknown.xyz": "unsupported file type '.xyz'", "x.txt::$DATA": "unsupported file type '.txt::$data'",
           "--": "no file suffix", ".env": "a hidden file", ".git": "a hidden folder"}
    for name in odd:
        if name == ".git":
            (folder / name).mkdir()
            (folder / name / "config.txt").write_text("[core]")  # inside a hidden folder: never entered
        else:
            (folder / name).write_text("The vault code is 7741.")
    assert zhiku_kb(home, "create", "scan").returncode == 0
    added = zhiku_kb(home, "add", "scan", str(folder), "--quiet")
    assert added.returncode == 0, added.stderr
    for name, why in odd.items():
        line = next((ln for ln in added.stdout.splitlines() if f"] {name}: " in ln), "")
        assert "not read" in line and why in line, (name, added.stdout)
    assert "11 files: 6 added, 0 updated, 0 unchanged, 0 failed, 5 not read" in added.stdout, added.stdout
    assert "0 failed, 5 not read" in added.stderr
    paths, text = stored_text(home)
    assert paths == {f"note{i}.txt" for i in range(6)} and "vault" not in text and "[core]" not in text
    again = zhiku_kb(home, "add", "scan", str(folder), "--quiet")
    assert "11 files: 0 added, 0 updated, 6 unchanged, 0 failed, 5 not read" in again.stdout, again.stdout
    synced = zhiku_kb(home, "sync", "scan", str(folder), "--quiet")
    assert "unchanged: 6" in synced.stdout and "skipped: 5" in synced.stdout, synced.stdout
