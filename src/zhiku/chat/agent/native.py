"""The native step protocol: tools go to the model as OpenAI tool specs; its chat template (or the upstream
engine) formats them, and calls come back as `tool_calls` (or, from some models, as bare JSON text)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from zhiku.chat.agent.loop import Call, Step, StepProtocol, Tools, checked
from zhiku.chat.turn import Turn
from zhiku.chat.types import ChatEvent, closing, delta

_CALL_STARTS = ("{", "```", "<tool_call>")


class NativeSteps(StepProtocol):
    template = "native"
    limit_note = ("The step limit is reached: no more tools. Give your final answer now, "
                  "using what the tools returned.")

    async def step(self, turn: Turn, tools: Tools, messages: list[dict[str, Any]], number: int, final: bool,
                   out: Step) -> AsyncIterator[ChatEvent]:
        specs = [t.spec() for t in tools.values()]
        params = turn.params() if final else turn.params(tools=specs, tool_choice="auto")
        text, acc = "", {}  # type: str, dict[int, dict[str, Any]]
        live: bool | None = None  # undecided until the reply shows whether it may be a bare JSON call
        async with closing(turn.generate(messages, params)) as stream:
            async for d in stream:
                if d.text:
                    text += d.text
                    if live is None and text.strip():
                        live = final or not text.lstrip().startswith(_CALL_STARTS)
                        if live:
                            yield delta(text)
                    elif live:
                        yield delta(d.text)
                if d.tool_calls and not final:
                    merge_tool_calls(acc, d.tool_calls)
        if not acc and live is False:
            bare = bare_tool_calls(text, tools)
            if bare:  # some models (Qwen2.5-Coder) write calls without <tool_call> tags
                acc, text = dict(enumerate(bare)), ""
            elif text.lstrip().startswith("{") and '"name"' in text:
                # A call that is not valid JSON (or cut off by max_tokens): report it, let the model retry.
                acc = {0: {"id": "", "function": {"name": "?", "arguments": "{"}}}
                text = ""
            else:
                yield delta(text)
        if not acc:
            out.done = True
            return
        out.calls = [native_call(raw, tools, f"call_{number}_{i}") for i, raw in sorted(acc.items())]
        out.reply = {"role": "assistant", "content": text, "tool_calls": [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)}}
            for c in out.calls]}

    def observation(self, call: Call, result: str) -> dict[str, Any]:
        return {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": result}


def native_call(raw: dict[str, Any], tools: Tools, fallback_id: str) -> Call:
    fn = raw.get("function") or {}
    name = str(fn.get("name") or "")
    call = Call(str(raw.get("id") or fallback_id), name)
    if name == "?":
        call.error = "the tool call was not valid JSON (or was cut off); write one complete call"
        return call
    if name not in tools:
        call.error = f"unknown tool '{name}'; use one of {', '.join(tools)}"
        return call
    args = fn.get("arguments") or {}
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as e:
            call.error = f"arguments are not valid JSON ({e.msg})"
            return call
    if not isinstance(args, dict):
        call.error = "arguments must be a JSON object"
        return call
    call.arguments = args
    return checked(call, tools[name])


def bare_tool_calls(text: str, tools: Tools) -> list[dict[str, Any]]:
    """Tool calls written as plain JSON objects ({"name": ..., "arguments": {...}}, one or several,
    possibly fenced or tagged); empty unless the whole text is such calls."""
    body = re.sub(r"```(?:json)?|</?tool_call>", "\n", text).strip()
    decoder, calls, pos = json.JSONDecoder(), [], 0
    while pos < len(body):
        try:
            obj, end = decoder.raw_decode(body, pos)
        except json.JSONDecodeError:
            return []
        if not isinstance(obj, dict) or obj.get("name") not in tools:
            return []
        calls.append({"id": "", "function": {"name": obj["name"],
                                             "arguments": obj.get("arguments", obj.get("parameters", {}))}})
        pos = end
        while pos < len(body) and body[pos].isspace():
            pos += 1
    return calls


def merge_tool_calls(acc: dict[int, dict[str, Any]], parts: list[dict[str, Any]]) -> None:
    """Accumulate tool calls that may arrive whole or, OpenAI-style, as fragments keyed by index."""
    for part in parts:
        index = part["index"] if isinstance(part.get("index"), int) else len(acc)
        slot = acc.setdefault(index, {"id": "", "function": {"name": "", "arguments": ""}})
        if part.get("id"):
            slot["id"] = part["id"]
        fn = part.get("function") or {}
        if fn.get("name"):
            slot["function"]["name"] += fn["name"]
        args = fn.get("arguments")
        if isinstance(args, dict):
            slot["function"]["arguments"] = args
        elif args:
            slot["function"]["arguments"] += args
