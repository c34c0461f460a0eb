"""Knowledge-base names are validated, uploaded file names sanitised, downloads confined to the KB folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from zhiku.kb.names import inside, safe_relative, sanitize_filename, validate_kb_name
from zhiku.kb.types import InvalidName


@pytest.mark.parametrize("name", ["docs", "知识库", "my_kb-2", "a", "x" * 64, "Ünïcode", "日本語テキスト"])
def test_valid_names(name: str) -> None:
    assert validate_kb_name(name) == name


@pytest.mark.parametrize(("name", "why"), [
    ("", "empty"),
    ("../x", "separator"),
    ("a/b", "separator"),
    ("a\\b", "separator"),
    ("..", ".."),
    ("a\x00b", "control"),
    ("a\nb", "control"),
    ("a\u200bb", "invisible"),
    ("a\u2215b", "DIVISION SLASH"),
    ("a\uff0fb", "FULLWIDTH SOLIDUS"),
    ("a\u2044b", "FRACTION SLASH"),
    ("a\uff0e\uff0eb", "FULLWIDTH FULL STOP"),
    ("x" * 65, "at most 64"),
    ("has space", "letters, digits"),
    ("a.b", "letters, digits"),
    ("ｆｕｌｌ", "look-alike"),
])
def test_invalid_names_are_refused_clearly(name: str, why: str) -> None:
    with pytest.raises(InvalidName, match=why):
        validate_kb_name(name)


@pytest.mark.parametrize(("raw", "safe"), [
    ("report.pdf", "report.pdf"),
    ("../../etc/passwd", "passwd"),
    ("/abs/path/报告.docx", "报告.docx"),
    ("C:\\Users\\me\\notes.txt", "notes.txt"),
    ("a\u2215b.txt", "b.txt"),
    ("a\uff0fb.txt", "b.txt"),
    ("..", "upload"),
    ("", "upload"),
    ("bad\x00name\x07.md", "badname.md"),
    (".hidden", "hidden"),
])
def test_uploaded_names_are_sanitised(raw: str, safe: str) -> None:
    assert sanitize_filename(raw) == safe


def test_long_filename_keeps_its_suffix() -> None:
    out = sanitize_filename("长" * 500 + ".pdf")
    assert len(out) <= 200 and out.endswith(".pdf")


def test_relative_paths_cannot_climb(tmp_path: Path) -> None:
    assert safe_relative("sub/dir/a.txt") == "sub/dir/a.txt"
    for bad in ("../a.txt", "sub/../../a.txt", ""):
        with pytest.raises(InvalidName):
            safe_relative(bad)
    base = tmp_path / "kb"
    (base / "files").mkdir(parents=True)
    (tmp_path / "secret").write_text("x")
    (base / "files" / "link").symlink_to(tmp_path / "secret")
    assert inside(base, base / "files" / "a") == (base / "files" / "a").resolve()
    for escape in (base / ".." / "secret", base / "files" / "link"):
        with pytest.raises(InvalidName):
            inside(base, escape)
