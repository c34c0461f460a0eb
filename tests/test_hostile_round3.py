"""Hostile input, round three (issue 20, the smaller ones): unknown routes and broken multipart bodies get
honest codes, Windows device names are refused as knowledge-base names, a decomposed (NFD) name is the
same base as its composed (NFC) form, and a multipart file name that is not UTF-8 is refused rather than
stored garbled. A real server on loopback; multipart bodies written byte by byte where clients would fix them.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import running
from zhiku.config import Settings
from zhiku.kb.names import validate_kb_name
from zhiku.kb.types import InvalidName
from zhiku.server.app import create_app

API = "/api/kb"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("round3") / "home"
    home.mkdir()
    with running(create_app(Settings(home=home, embedder="use-m3", ui=False), preload=False)) as base:
        httpx.post(base + API, json={"name": "uploads"}, timeout=60).raise_for_status()
        yield base


@pytest.mark.parametrize(("method", "path", "status", "code"), [
    ("GET", "/no/such/route", 404, "not_found"),
    ("GET", "/v1/no-such-endpoint", 404, "not_found"),
    ("DELETE", "/v1/chat/completions", 405, "method_not_allowed"),
])
def test_unknown_routes_say_so(server: str, method: str, path: str, status: int, code: str) -> None:
    r = httpx.request(method, server + path, timeout=30)
    assert r.status_code == status and r.json()["error"]["code"] == code, r.text
    assert r.json()["error"]["message"] and "internal" not in r.json()["error"]["message"]


@pytest.mark.parametrize("body", [
    b"--wrong-boundary\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.txt\"\r\n\r\nhi\r\n--wrong--\r\n",
    b"--b0undary\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.txt\"\r\n\r\nno end",
    b"not multipart at all",
], ids=["wrong-boundary", "cut-short", "garbage"])
def test_a_broken_multipart_body_is_a_400_with_an_honest_code(server: str, body: bytes) -> None:
    r = httpx.post(f"{server}{API}/uploads/documents", content=body, timeout=30,
                   headers={"Content-Type": "multipart/form-data; boundary=b0undary"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_request" and error["type"] == "invalid_request_error", error


@pytest.mark.parametrize("name", ["CON", "con", "NUL", "PRN", "AUX", "COM1", "com9", "LPT1", "LPT9", "COM0"])
def test_windows_device_names_are_refused(server: str, name: str) -> None:
    r = httpx.post(server + API, json={"name": name}, timeout=30)
    assert r.status_code == 400 and "device name on Windows" in r.json()["error"]["message"], r.text
    with pytest.raises(InvalidName, match="device name"):
        validate_kb_name(name)


@pytest.mark.parametrize("name", ["CONSOLE", "COM10", "LPTX", "NULL", "auxiliary"])
def test_names_that_only_start_like_a_device_are_fine(name: str) -> None:
    assert validate_kb_name(name) == name


def test_a_decomposed_name_is_the_composed_one(server: str) -> None:
    nfd, nfc = unicodedata.normalize("NFD", "café"), "café"
    assert nfd != nfc and validate_kb_name(nfd) == nfc
    r = httpx.post(server + API, json={"name": nfd}, timeout=30)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == nfc
    assert httpx.get(f"{server}{API}/{nfc}", timeout=30).status_code == 200
    assert httpx.get(f"{server}{API}/{nfd}", timeout=30).json()["name"] == nfc  # one base, either spelling
    again = httpx.post(server + API, json={"name": nfc}, timeout=30)
    assert again.status_code == 409, again.text
    up = httpx.post(f"{server}{API}/{nfd}/documents", files=[("files", ("a.txt", b"Hello there.", "text/plain"))],
                    timeout=120)
    assert up.status_code == 200 and up.json()[0]["kb"] == nfc


def test_a_file_name_that_is_not_utf8_is_refused_not_garbled(server: str) -> None:
    boundary = uuid.uuid4().hex
    name = "报告".encode("gbk") + b".txt"  # what an old Chinese Windows client might send
    body = (f"--{boundary}\r\n".encode() + b'Content-Disposition: form-data; name="files"; filename="' + name
            + b'"\r\nContent-Type: text/plain\r\n\r\nThe ferry leaves at noon.\r\n' + f"--{boundary}--\r\n".encode())
    r = httpx.post(f"{server}{API}/uploads/documents", content=body, timeout=60,
                   headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_filename" and "not valid UTF-8" in error["message"], error
    listed = httpx.get(f"{server}{API}/uploads/documents", timeout=30).json()
    assert listed == []  # nothing stored under a Latin-1 reading such as "±¨¸æ.txt"


def test_the_reserved_names_are_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert "`CON`" in readme and "NFC" in readme


def test_a_missing_role_is_named_not_taken_for_an_unreachable_server() -> None:
    """The server's own words (PostgreSQL 16 under trust authentication, as libpq reports them): reaching a
    trust server to provoke them would need a second PostgreSQL, so the error is built from that text."""
    import psycopg

    from zhiku.db import _config_error

    e = psycopg.OperationalError('connection failed: connection to server at "127.0.0.1", port 5432 failed: '
                                 'FATAL:  role "nobody" does not exist')
    message = str(_config_error(e, "postgresql://nobody@127.0.0.1:5432/zhiku"))
    assert "role" in message and "does not exist on the server" in message and "createuser" in message
    assert "cannot reach" not in message and "start the server" not in message
