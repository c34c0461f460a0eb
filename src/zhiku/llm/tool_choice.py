"""OpenAI's `tool_choice` for local models: what the generation parameters become for each choice.

- "none": the tools are not offered, so the answer is text;
- "auto" (the default with tools): the model decides; its `<tool_call>` (or bare JSON) becomes tool_calls;
- "required" or {"type": "function", "function": {"name": ...}}: a call is forced by a JSON grammar over
  the allowed tools' names and argument schemas, through the backend's `response_format` parameter.
A model whose chat template cannot render tools is refused with a 400 rather than silently sent none.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from zhiku.llm.base import GenerationParams, InvalidParamsError


def _name(tool: dict[str, Any]) -> str:
    return str((tool.get("function") or {}).get("name", ""))


def _call_schema(tool: dict[str, Any]) -> dict[str, Any]:
    params = (tool.get("function") or {}).get("parameters")
    args = params if isinstance(params, dict) and params else {"type": "object"}
    return {"type": "object", "properties": {"name": {"const": _name(tool)}, "arguments": args},
            "required": ["name", "arguments"]}


NO_TOOL_TEMPLATE = "its chat template has no tool support"


def resolve(params: GenerationParams, supports_tools: bool, model: str,
            why_not: str = NO_TOOL_TEMPLATE) -> GenerationParams:
    """The parameters that honour `params.tool_choice`, or InvalidParamsError saying why it cannot be
    (`why_not`: why this model cannot take tools)."""
    choice = params.tool_choice if params.tool_choice is not None else "auto"
    if not params.tools:
        if choice not in ("none", "auto"):
            raise InvalidParamsError("tool_choice needs tools to choose from", "tool_choice")
        return dataclasses.replace(params, tool_choice=None)
    if choice == "none":
        return dataclasses.replace(params, tools=None, tool_choice=None)
    if not supports_tools:
        raise InvalidParamsError(f"model {model!r} cannot take tools: {why_not}; use a model that has tool "
                                 "support (e.g. qwen2.5-coder-0.5b) or tool_choice \"none\"", "tools")
    if choice == "auto":
        return params
    if choice == "required":
        allowed = list(params.tools)
    elif isinstance(choice, dict) and choice.get("type") == "function" \
            and isinstance((choice.get("function") or {}).get("name"), str):
        wanted = choice["function"]["name"]
        allowed = [t for t in params.tools if _name(t) == wanted]
        if not allowed:
            raise InvalidParamsError(f"tool_choice names function {wanted!r}, which is not among the tools",
                                     "tool_choice")
    else:
        raise InvalidParamsError('tool_choice must be "none", "auto", "required" or '
                                 '{"type": "function", "function": {"name": ...}}', "tool_choice")
    if params.response_format and params.response_format.get("type") not in (None, "text"):
        raise InvalidParamsError("a forced tool call cannot be combined with response_format", "response_format")
    schemas = [_call_schema(t) for t in allowed]
    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    return dataclasses.replace(params, tools=allowed, response_format={"type": "json_object", "schema": schema})
