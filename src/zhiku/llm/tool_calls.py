"""Tool calls for local models whose chat template renders `tools` (Qwen2.5, Hermes style).

Such models answer a tool request with `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`;
this turns that text into OpenAI tool_calls. JSON is parsed with json.loads, never evaluated.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def _call(text: str, names: set[str] | None) -> dict[str, Any] | None:
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    if names is not None and obj["name"] not in names:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": obj["name"],
                         "arguments": args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)}}


def parse_tool_calls(text: str, names: set[str] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Split model output into (plain content, tool calls). Malformed blocks stay in the content.
    A reply that is nothing but such a JSON object naming one of `names` counts too (small models
    often drop the tags)."""
    calls: list[dict[str, Any]] = []
    kept: list[str] = []
    pos = 0
    for m in _TOOL_CALL.finditer(text):
        call = _call(m.group(1), names)
        if call is None:
            continue
        calls.append(call)
        kept.append(text[pos:m.start()])
        pos = m.end()
    kept.append(text[pos:])
    if not calls and names:
        bare = _call(text.strip(), names)
        if bare is not None:
            return "", [bare]
    return ("".join(kept).strip() if calls else text), calls


def template_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI messages -> what HF-style chat templates expect: string content, `developer` as system,
    tool-call arguments as objects (templates apply `tojson` to them)."""
    from zhiku.llm.text import message_text

    out = []
    for m in messages:
        role = "system" if m.get("role") == "developer" else m.get("role")
        msg: dict[str, Any] = {"role": role, "content": message_text(m.get("content"))}
        for key in ("name", "tool_call_id"):
            if m.get(key):
                msg[key] = m[key]
        if m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                fn = dict(c.get("function") or {})
                if isinstance(fn.get("arguments"), str):
                    try:
                        fn["arguments"] = json.loads(fn["arguments"])
                    except ValueError:
                        pass
                calls.append({**c, "function": fn})
            msg["tool_calls"] = calls
        out.append(msg)
    return out
