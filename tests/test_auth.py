"""API keys: /v1, /api and /metrics need `Authorization: Bearer <key>` once a key is configured."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from conftest import running
from zhiku.config import Settings
from zhiku.server import run as server_run
from zhiku.server.app import create_app
from zhiku.server.auth import AuthConfigError, needs_key

KEY = "sk-zhiku-test-0123456789"
# One read-only route per protected area; each answers 200 with the key.
PROTECTED_GETS = ["/v1/models", "/api/kb", "/metrics"]


@pytest.fixture
def keyed(settings: Settings) -> Iterator[str]:
    with running(create_app(settings.model_copy(update={"api_key": KEY}), preload=False)) as base:
        yield base


def assert_401(r: httpx.Response, code: str) -> None:
    assert r.status_code == 401, (r.request.url, r.status_code, r.text)
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == code and err["message"]
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_every_protected_route_needs_the_key(keyed: str) -> None:
    with httpx.Client(base_url=keyed, timeout=30) as c:
        for path in PROTECTED_GETS:
            assert_401(c.get(path), "missing_api_key")
            assert_401(c.get(path, headers={"Authorization": "Bearer wrong"}), "invalid_api_key")
            assert_401(c.get(path, headers={"Authorization": KEY}), "missing_api_key")  # no scheme
            assert_401(c.get(path, headers={"Authorization": f"Basic {KEY}"}), "missing_api_key")
            assert c.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200, path
            assert c.get(path, headers={"Authorization": f"bearer  {KEY}"}).status_code == 200, path
        # Writes are refused before the body is even read, whatever the route does with it.
        assert_401(c.post("/v1/chat/completions", json={"model": "x", "messages": []}), "missing_api_key")
        assert_401(c.post("/api/kb", json={"name": "x"}), "missing_api_key")
        assert_401(c.delete("/api/kb/x"), "missing_api_key")
        assert_401(c.post("/api/chat", json={"query": "hi"}), "missing_api_key")
        assert_401(c.get("/api/conversations"), "missing_api_key")
        assert_401(c.post("/api/kb/x/documents", files=[("files", ("a.txt", b"a"))]), "missing_api_key")
        # Case and slash games do not slip past the check.
        assert_401(c.get("/V1/models"), "missing_api_key")
        assert_401(c.get(keyed + "//api//kb"), "missing_api_key")
        # /health stays open for probes.
        assert c.get("/health").status_code == 200


def test_official_client_sees_an_authentication_error(keyed: str) -> None:
    bad = openai.OpenAI(base_url=keyed + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.models.list()
    assert info.value.code == "invalid_api_key"
    good = openai.OpenAI(base_url=keyed + "/v1", api_key=KEY, max_retries=0)
    assert good.models.list().data


def test_without_a_key_setting_the_api_is_open(settings: Settings) -> None:
    with running(create_app(settings, preload=False)) as base:
        for path in PROTECTED_GETS:
            assert httpx.get(base + path, timeout=30).status_code == 200, path


def test_keys_file_holds_several_keys_and_is_reread(settings: Settings, tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# team keys\nkey-alice\n\n  key-bob  \n", encoding="utf-8")
    app = create_app(settings.model_copy(update={"api_keys_file": keys}), preload=False)
    with running(app) as base, httpx.Client(base_url=base, timeout=30) as c:
        def status(key: str) -> int:
            return c.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code

        assert status("key-alice") == 200 and status("key-bob") == 200
        assert status("# team keys") == 401 and status("key-carol") == 401
        keys.write_text("key-carol\n", encoding="utf-8")  # revoke alice and bob, no restart
        assert status("key-carol") == 200 and status("key-alice") == 401
        keys.write_text("", encoding="utf-8")  # an empty file locks everyone out, it does not open up
        assert status("key-carol") == 401 and c.get("/v1/models").status_code == 401


def test_missing_keys_file_refuses_to_start(settings: Settings, tmp_path: Path) -> None:
    missing = settings.model_copy(update={"api_keys_file": tmp_path / "nope.txt"})
    with pytest.raises(AuthConfigError):
        create_app(missing, preload=False)
    with pytest.raises(SystemExit, match="does not exist"):  # `zhiku serve`: one line, before the model loads
        server_run.serve(missing, ui=False)


@pytest.mark.parametrize(("path", "protected"), [
    ("/v1/chat/completions", True), ("/api", True), ("/metrics", True), ("/API/kb", True),
    ("/x/../v1/models", True), ("//v1", True), ("/health", False), ("/", False), ("/v10", False),
    ("/apiary", False), ("/gradio_api/info", False),
])
def test_which_paths_need_a_key(path: str, protected: bool) -> None:
    assert needs_key(path) is protected


def test_ask_url_sends_the_configured_key(keyed: str, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """`zhiku ask --url` sends the api_key setting (here from zhiku.toml), read where every setting is read."""
    from typer.testing import CliRunner

    from zhiku.cli import app as cli_app

    monkeypatch.delenv("ZHIKU_API_KEY", raising=False)
    ask = ["ask", "x", "--kb", "nope", "--url", keyed]
    refused = CliRunner().invoke(cli_app, ask)
    assert refused.exit_code == 1 and "HTTP 401" in refused.output, refused.output
    (settings.home / "zhiku.toml").write_text(f'api_key = "{KEY}"\n', encoding="utf-8")
    through = CliRunner().invoke(cli_app, ask)  # past the key: the server itself answers that "nope" is unknown
    assert through.exit_code == 1 and "nope" in through.output and "401" not in through.output, through.output
