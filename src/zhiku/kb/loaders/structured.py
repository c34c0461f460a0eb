"""JSON and JSON Lines: each record flattened to readable "key.path: value" lines, records separated by a
blank line so that the splitter keeps small records whole."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .base import LoadedDoc, LoaderError, Section, decode_text


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return " ".join(str(value).split()) if isinstance(value, str) else str(value)


def flatten(value: Any, prefix: str = "") -> list[str]:
    """{"a": {"b": 1}, "c": [1, 2]} -> ["a.b: 1", "c: 1, 2"]; iterative, so deep nesting is no crash."""
    lines: list[str] = []
    stack: list[tuple[str, Any]] = [(prefix, value)]
    while stack:
        key, v = stack.pop()
        if isinstance(v, dict):
            stack.extend((f"{key}.{k}" if key else str(k), item) for k, item in reversed(list(v.items())))
        elif isinstance(v, list) and v and all(not isinstance(x, dict | list) for x in v):
            lines.append(f"{key}: {', '.join(_scalar(x) for x in v)}" if key else ", ".join(map(_scalar, v)))
        elif isinstance(v, list):
            stack.extend((f"{key}[{i}]", item) for i, item in reversed(list(enumerate(v))))
        else:
            text = _scalar(v)
            if text:
                lines.append(f"{key}: {text}" if key else text)
    return lines


def _records_text(records: list[Any]) -> str:
    return "\n\n".join(t for t in ("\n".join(flatten(r)) for r in records) if t)


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError as e:
        raise LoaderError("JSON nested too deeply") from e


def load_json(path: Path) -> LoadedDoc:
    warnings: list[str] = []
    text = decode_text(path.read_bytes(), warnings)
    try:
        data = _parse(text)
    except json.JSONDecodeError as e:
        raise LoaderError(f"invalid JSON: {e}") from e
    records = data if isinstance(data, list) else [data]
    return LoadedDoc("json", [Section(_records_text(records))], warnings)


def load_jsonl(path: Path) -> LoadedDoc:
    warnings: list[str] = []
    text = decode_text(path.read_bytes(), warnings)
    records: list[Any] = []
    bad: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append(_parse(line))
            except json.JSONDecodeError:
                bad.append(number)
    if bad and not records:
        raise LoaderError(f"invalid JSON Lines: no line parses (first bad line {bad[0]})")
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
        warnings.append(f"{len(bad)} lines are not valid JSON and were skipped: {shown}")
    return LoadedDoc("jsonl", [Section(_records_text(records))], warnings)
