"""Knowledge-base names and uploaded file names: validated or sanitised before they touch a path.

A knowledge-base name becomes a folder name, so it is *validated* (refused with a clear message);
an uploaded file name comes from a browser, so it is *sanitised* (reduced to a safe base name).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from zhiku.kb.types import InvalidName

MAX_NAME = 64
# File systems count a name's bytes (255 on ext4, APFS, NTFS's UTF-16 units aside), not its characters:
# 200 bytes leaves room for the temporary suffix an original gets while it is copied, and for " (2)".
MAX_FILENAME_BYTES = 200

# \w: letters and digits of any script (CJK included) and "_"; plus "-".
_NAME_RE = re.compile(r"^[\w\-]{1,64}$", re.UNICODE)

# Characters that render like a path separator or a dot-dot; refused by name so the message is clear.
_SLASH_LOOKALIKES = {
    "\u2215": "DIVISION SLASH", "\u2044": "FRACTION SLASH", "\uff0f": "FULLWIDTH SOLIDUS",
    "\u29f8": "BIG SOLIDUS", "\u2571": "BOX DRAWINGS LIGHT DIAGONAL", "\u0338": "COMBINING LONG SOLIDUS",
    "\uff3c": "FULLWIDTH REVERSE SOLIDUS", "\u2216": "SET MINUS", "\u29f9": "BIG REVERSE SOLIDUS",
}
_DOT_LOOKALIKES = {"\uff0e": "FULLWIDTH FULL STOP", "\u2024": "ONE DOT LEADER", "\u2025": "TWO DOT LEADER"}
_LOOKALIKES = {**_SLASH_LOOKALIKES, **_DOT_LOOKALIKES}


# Names Windows reserves for devices, whatever the case or suffix: no folder can have them there.
WINDOWS_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$",
                              *(f"{dev}{n}" for dev in ("COM", "LPT") for n in "0123456789¹²³")})


def validate_kb_name(name: str) -> str:
    """Return `name` in NFC if it is a valid knowledge-base name, else raise InvalidName saying why.

    NFC: "café" typed on macOS arrives decomposed (e + U+0301); both spellings are one name, and callers
    use the returned form for folders and rows."""
    if not isinstance(name, str) or name == "":
        raise InvalidName("knowledge-base name is empty; use 1-64 letters, digits, CJK, '-' or '_'")
    name = unicodedata.normalize("NFC", name)
    if len(name) > MAX_NAME:
        raise InvalidName(f"knowledge-base name is {len(name)} characters long; at most {MAX_NAME} allowed")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_FILENAME_BYTES:  # it names the base's folder
        raise InvalidName(f"knowledge-base name is {len(name.encode('utf-8', 'surrogatepass'))} bytes long in UTF-8 "
                          f"(it names a folder); at most {MAX_FILENAME_BYTES} allowed")
    for ch in name:
        if ch in "/\\":
            raise InvalidName(f"knowledge-base name {name!r} contains a path separator {ch!r}")
        if ch == "\x00" or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise InvalidName(f"knowledge-base name {name!r} contains a control or invisible character "
                              f"U+{ord(ch):04X}")
        if ch in _LOOKALIKES:
            raise InvalidName(f"knowledge-base name {name!r} contains U+{ord(ch):04X} "
                              f"({_LOOKALIKES[ch]}), which looks like a path separator or dot")
    if name in (".", ".."):
        folder = "this folder" if name == "." else "the parent folder"
        raise InvalidName(f"knowledge-base name {name!r} is a path of its own ({folder}); "
                          "use 1-64 letters, digits, CJK, '-' or '_'")
    if ".." in name:
        raise InvalidName(f"knowledge-base name {name!r} contains '..'")
    if name.split(".")[0].upper() in WINDOWS_RESERVED:
        raise InvalidName(f"knowledge-base name {name!r} is a device name on Windows (CON, PRN, AUX, NUL, COM1-9, "
                          "LPT1-9), which cannot name a folder there; choose another")
    if not _NAME_RE.match(name) or unicodedata.normalize("NFKC", name) != name:
        bad = sorted({c for c in name if not (c.isalnum() or c in "-_")})
        if not bad:  # NFKC changed it: a compatibility look-alike (full-width letters etc.)
            raise InvalidName(f"knowledge-base name {name!r} contains compatibility look-alike characters; "
                              f"write it as {unicodedata.normalize('NFKC', name)!r}")
        raise InvalidName(f"knowledge-base name {name!r} may only hold letters, digits, CJK, '-' and '_' "
                          f"(found {''.join(bad)!r})")
    return name


def sanitize_filename(filename: str) -> str:
    """A safe base name for an uploaded file: no directories, separators, control characters or dot-dot.

    Keeps the suffix (the loader is chosen by it) and CJK text. Never returns an empty string.
    """
    name = unicodedata.normalize("NFKC", filename or "")
    # NFKC folds U+FF0F etc. into "/"; the division slash and friends are replaced explicitly.
    for ch in _SLASH_LOOKALIKES:
        name = name.replace(ch, "/")
    name = name.replace("\\", "/")
    name = PurePosixPath(name).name if "/" in name else name
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = re.sub(r"[<>:\"|?*]", "_", name).strip().strip(".").strip()
    name = re.sub(r"\s+", " ", name)
    if not name or set(name) <= {".", " "}:
        name = "upload"
    if len(name.encode()) > MAX_FILENAME_BYTES:
        suffix = _cut(Path(name).suffix, 32)
        name = _cut(name[: len(name) - len(Path(name).suffix)], MAX_FILENAME_BYTES - len(suffix.encode()))
        name = name.rstrip() + suffix
    return name


def _cut(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` whose UTF-8 form fits in `max_bytes` (never half a character)."""
    return text.encode()[:max_bytes].decode("utf-8", "ignore")


def distinct(paths: Sequence[str]) -> list[str]:
    """Document paths made distinct within one request, in order: the first `a.txt` keeps its name, the
    next becomes `a (2).txt`, and so on (skipping names already in the request). Two files never silently
    share one document."""
    taken = set(paths)
    seen: set[str] = set()
    out = []
    for path in paths:
        if path in seen:
            p = PurePosixPath(path)
            n = 2
            while (candidate := str(p.with_name(f"{p.stem} ({n}){p.suffix}"))) in taken:
                n += 1
            taken.add(candidate)
            path = candidate
        seen.add(path)
        out.append(path)
    return out


def same_but_case(name: str, existing: Iterable[str]) -> str | None:
    """An existing name that differs from `name` only by letter case: their folders would be one folder
    on a case-insensitive file system (macOS, Windows)."""
    folded = name.casefold()
    return next((e for e in existing if e != name and e.casefold() == folded), None)


def safe_relative(path: str) -> str:
    """A relative document path (from a synced folder) checked to stay inside its base: no '..', absolute
    parts or control characters. Each part is sanitised like an uploaded name."""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise InvalidName(f"document path {path!r} is not a relative path inside the knowledge base")
    return "/".join(sanitize_filename(p) for p in parts)


def inside(base: Path, candidate: Path) -> Path:
    """`candidate` resolved, if it lies inside `base`; else InvalidName (no symlink or '..' escapes)."""
    resolved = candidate.resolve()
    if not resolved.is_relative_to(base.resolve()):
        raise InvalidName(f"{candidate} is outside {base}")
    return resolved
