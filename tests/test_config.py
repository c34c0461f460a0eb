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
