"""Settings precedence: defaults < zhiku.toml < ZHIKU_* env < CLI flags, and `zhiku config show`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from zhiku.cli import app
from zhiku.config import Settings, load_settings, setting_sources


def test_layers_override_in_order(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().port == 8000
    (home / "zhiku.toml").write_text('port = 9001\nctx = 1024\nmodel = "from-toml"\n', encoding="utf-8")
    s = load_settings()
    assert (s.port, s.ctx, s.model) == (9001, 1024, "from-toml")
    monkeypatch.setenv("ZHIKU_PORT", "9002")
    s = load_settings()
    assert (s.port, s.ctx) == (9002, 1024)
    s = load_settings(port=9003, ctx=None)
    assert (s.port, s.ctx) == (9003, 1024)
    sources = setting_sources(port=9003)
    assert sources["port"] == "cli"
    assert sources["ctx"].endswith("zhiku.toml")
    assert sources["threads"] == "default"
    monkeypatch.setenv("ZHIKU_THREADS", "1")
    assert setting_sources()["threads"] == "env"


def test_home_defaults_and_derived_paths(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZHIKU_MODELS_DIR")
    s = Settings()
    assert s.home == home
    assert s.db_path == home / "zhiku.db"
    assert s.models_path == home / "models"


def test_bad_values_are_refused(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZHIKU_PORT", "not-a-port")
    with pytest.raises(ValidationError):
        load_settings()
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 1
    assert "invalid settings" in result.output


def test_config_show_json(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZHIKU_PARALLEL", "3")
    result = CliRunner().invoke(app, ["config", "show", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["parallel"] == {"value": 3, "source": "env"}
    assert data["port"]["source"] == "default"


def test_config_show_masks_secrets(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys and passwords never reach the screen (issue 12: the database password); the rest still shows."""
    secrets = {"ZHIKU_DATABASE_URL": "postgresql://zhiku:hunter2-db@db.example:5432/kb",
               "ZHIKU_API_KEY": "sk-server-key-1", "ZHIKU_UPSTREAM_API_KEY": "sk-upstream-2",
               "ZHIKU_EMBED_BASE_URL": "http://bob:hunter3-embed@emb.example/v1?token=tok-4&x=1"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    (home / "zhiku.toml").write_text('embed_api_key = "sk-embed-5"\n', encoding="utf-8")
    table = CliRunner(env={"COLUMNS": "400"}).invoke(app, ["config", "show"])
    as_json = CliRunner().invoke(app, ["config", "show", "--json"])
    assert table.exit_code == 0 and as_json.exit_code == 0, table.output + as_json.output
    for leaked in ("hunter2-db", "sk-server-key-1", "sk-upstream-2", "hunter3-embed", "tok-4", "sk-embed-5"):
        assert leaked not in table.output and leaked not in as_json.output
    data = {k: v["value"] for k, v in json.loads(as_json.output).items()}
    assert data["database_url"] == "postgresql://zhiku:***@db.example:5432/kb"
    assert data["embed_base_url"] == "http://bob:***@emb.example/v1?token=***&x=1"
    assert data["api_key"] == data["upstream_api_key"] == data["embed_api_key"] == "***"
    assert "postgresql://zhiku:***@db.example:5432/kb" in table.output
    monkeypatch.delenv("ZHIKU_API_KEY")
    data = json.loads(CliRunner().invoke(app, ["config", "show", "--json"]).output)
    assert data["api_key"] == {"value": "", "source": "default"}  # not set: shown as empty, not as ***
    assert data["searxng_url"]["value"] == "http://127.0.0.1:8888"  # a URL without a password is left alone
