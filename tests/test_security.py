"""Safe defaults: CORS closed, DNS-rebinding guard, the exposure warning, and no code run from data."""

from __future__ import annotations

import ast
from collections.abc import Iterator

import httpx
import pytest

from conftest import REPO, running
from zhiku.config import Settings
from zhiku.server import run as server_run
from zhiku.server.app import create_app
from zhiku.server.security import exposure_warning, is_loopback

EVIL = "http://evil.example"


@pytest.fixture
def open_server(settings: Settings) -> Iterator[str]:
    with running(create_app(settings, preload=False)) as base:
        yield base


def preflight(base: str, origin: str) -> httpx.Response:
    return httpx.options(base + "/v1/chat/completions", timeout=30, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})


def test_cors_is_closed_by_default(open_server: str) -> None:
    r = httpx.get(open_server + "/health", headers={"Origin": EVIL}, timeout=30)
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    assert "access-control-allow-origin" not in preflight(open_server, EVIL).headers


def test_cors_allows_only_configured_origins(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"cors_origins": ["http://app.example"]}), preload=False)
    with running(app) as base:
        ok = preflight(base, "http://app.example")
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "http://app.example"
        assert "authorization" in ok.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-origin" not in preflight(base, EVIL).headers
        r = httpx.get(base + "/health", headers={"Origin": "http://app.example"}, timeout=30)
        assert r.headers["access-control-allow-origin"] == "http://app.example"


def test_dns_rebinding_is_refused_on_loopback(open_server: str) -> None:
    # A page on evil.example whose name now points at 127.0.0.1: same-origin to the browser, so CORS
    # does not help; the foreign Host header gives it away.
    rebound = {"Host": "evil.example:8000", "Origin": "http://evil.example:8000", "Sec-Fetch-Site": "same-origin"}
    r = httpx.get(open_server + "/v1/models", headers=rebound, timeout=30)
    assert r.status_code == 403 and r.json()["error"]["code"] == "host_not_allowed"
    port = open_server.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        same = {"Host": host, "Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}
        assert httpx.get(open_server + "/health", headers=same, timeout=30).status_code == 200, host
    # Programs (no browser headers) may use any Host, e.g. through an SSH tunnel or a proxy.
    assert httpx.get(open_server + "/health", headers={"Host": "zhiku.internal"}, timeout=30).status_code == 200


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("zhiku.example", False), ("", False),
])
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_exposure_warning_only_without_a_key_off_loopback(settings: Settings) -> None:
    assert exposure_warning(settings) is None  # 127.0.0.1
    public = settings.model_copy(update={"host": "0.0.0.0"})
    assert "WITHOUT an API key" in (exposure_warning(public) or "")
    assert exposure_warning(public.model_copy(update={"api_key": "k"})) is None


def test_serve_prints_the_warning_before_binding(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # Test double: uvicorn.run is replaced so the test never listens on a public address.
    calls: list[str] = []
    monkeypatch.setattr(server_run.uvicorn, "run", lambda app, host, **kw: calls.append(host))
    server_run.serve(settings.model_copy(update={"host": "0.0.0.0"}), ui=False)
    # the box is folded to the terminal's width (COLUMNS): read its words, not its lines
    err = " ".join(capsys.readouterr().err.replace("│", " ").split())
    assert calls == ["0.0.0.0"] and "WITHOUT an API key" in err and "WARNING" in err
    server_run.serve(settings, ui=False)
    assert "WITHOUT an API key" not in capsys.readouterr().err


# --- no code from data -------------------------------------------------------------------------------

BANNED_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal", "joblib"}
BANNED_BUILTINS = {"eval", "exec", "compile", "__import__"}
BANNED_CALLS = {("os", "system"), ("os", "popen"), ("yaml", "load"), ("yaml", "unsafe_load"),
                ("torch", "load"), ("pd", "read_pickle"), ("pandas", "read_pickle")}


def code_from_data_findings(source: str, filename: str = "<src>") -> list[str]:
    """Every way in `source` to run code that came from data: pickle-like loaders, eval/exec, shells."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where} import {a.name}" for a in node.names if a.name.split(".")[0] in BANNED_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in BANNED_MODULES:
            found.append(f"{where} from {node.module} import")
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in BANNED_BUILTINS:
                found.append(f"{where} {f.id}()")
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) \
                    and (f.value.id, f.attr) in BANNED_CALLS:
                found.append(f"{where} {f.value.id}.{f.attr}()")
            for kw in node.keywords:
                if kw.arg in ("shell", "allow_pickle") and isinstance(kw.value, ast.Constant) and kw.value.value:
                    found.append(f"{where} {kw.arg}=True")
    return found


def test_scanner_catches_each_pattern() -> None:
    hostile = ("import pickle\nfrom dill import loads\nimport shelve as s\neval(x)\nexec(y)\n"
               "os.system(c)\nsubprocess.run(c, shell=True)\nnp.load(p, allow_pickle=True)\nyaml.load(t)\n")
    assert len(code_from_data_findings(hostile)) == 9
    assert code_from_data_findings("import json\njson.loads(x)\nsubprocess.run(['ls'])\n") == []


def test_no_code_from_data_in_zhiku() -> None:
    files = sorted((REPO / "src" / "zhiku").rglob("*.py"))
    assert len(files) > 20
    findings = [f for p in files for f in code_from_data_findings(p.read_text(encoding="utf-8"),
                                                                   str(p.relative_to(REPO)))]
    assert findings == []


def test_no_shell_tool_for_the_agent() -> None:
    # The agent's tools run on the model's say-so: none of them may reach a process or a shell.
    for p in sorted((REPO / "src" / "zhiku" / "chat").rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n.split(".")[0] in ("subprocess", "pty", "shlex")], p
