"""A bad ZHIKU_* value (or zhiku.toml entry) ends every command with one line that names it, never a
traceback. Every leaf command of the CLI is listed here, so a new command must be added (and honour it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from zhiku.cli import app

# the arguments each command needs before it reads the settings (None: it reads no settings at all)
ARGS: dict[str, list[str] | None] = {
    "start": [], "serve": [], "ask": ["hello"], "config show": [], "bench": ["llm"],
    "models list": [], "models pull": ["smollm2-135m"], "models path": ["smollm2-135m"],
    "models rm": ["smollm2-135m"],
    "kb create": ["x"], "kb list": [], "kb show": ["x"], "kb add": ["x", "{file}"], "kb sync": ["x", "{dir}"],
    "kb search": ["x", "q"], "kb rm-doc": ["x", "1"], "kb rebuild": ["x"], "kb delete": ["x", "--yes"],
    "kb import-chatchat": ["{dir}"], "kb embed": ["x"],
    "db migrate": ["--to", "postgresql://u@127.0.0.1:9/x"], "db version": [],
    "eval retrieval": ["{dir}"], "eval answers": ["{dir}"], "eval fusion": ["{dir}"],
    "eval summary": ["{file}"], "eval table": ["{file}"],
    "eval convert squad": None, "eval convert cmrc": None, "eval convert beir": None, "eval convert rgb": None,  # file to file only
}


def leaf_commands(command: Any, prefix: str = "") -> list[str]:
    if hasattr(command, "commands"):  # a group (typer ships its own copy of click's classes)
        return [name for sub_name, sub in command.commands.items()
                for name in leaf_commands(sub, f"{prefix} {sub_name}".strip())] + \
            ([prefix] if prefix and command.invoke_without_command else [])
    return [prefix]


def test_every_command_is_listed() -> None:
    assert sorted(leaf_commands(typer.main.get_command(app))) == sorted(ARGS)


@pytest.mark.parametrize("command", [c for c, a in ARGS.items() if a is not None])
@pytest.mark.parametrize(("variable", "value"), [("ZHIKU_CTX", "lots"), ("ZHIKU_LLM_BACKEND", "gpu")])
def test_bad_setting_is_one_line(command: str, variable: str, value: str, home: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "doc.txt").write_text("text", encoding="utf-8")
    monkeypatch.setenv(variable, value)
    argv = command.split() + [a.format(file=home / "doc.txt", dir=home) for a in ARGS[command] or []]
    result = CliRunner().invoke(app, argv)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    name = variable.removeprefix("ZHIKU_").lower()
    assert lines[0].startswith("error: invalid settings:") and f"{name}={value!r}" in lines[0], lines[0]
    assert variable in lines[0]


def test_broken_toml_is_one_line(home: Path) -> None:
    (home / "zhiku.toml").write_text("ctx = = 3\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["kb", "list"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "zhiku.toml is not valid TOML" in lines[0], result.output
