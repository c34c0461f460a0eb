"""The JSON step protocol: each step is one object {thought, action, action_input}, held by a JSON-schema
grammar whose `action` is an enum of the real tool names (or final_answer), so even a very small model
only makes well-formed calls to tools that exist. The final answer streams as it is generated."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from zhiku.chat.agent.loop import Call, Step, StepProtocol, Tools, checked, no_answer
from zhiku.chat.agent.react import parse_react
from zhiku.chat.turn import Turn
from zhiku.chat.types import ChatEvent, closing, delta

FINAL = "final_answer"
MAX_TOOL_INPUT = 300  # characters: keeps a looping small model from filling max_tokens with one input
_THOUGHT = re.compile(r'^\s*\{\s*"thought"\s*:\s*"')
_FINAL_START = re.compile(r'"action"\s*:\s*"final_answer"\s*,\s*"action_input"\s*:\s*"')
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\", '"': '"'}


class JsonSteps(StepProtocol):
    template = "json"
    limit_note = "The step limit is reached: no more tools. Give your final_answer now."

    def values(self, turn: Turn, tools: Tools) -> dict[str, str]:
        return {"question": turn.query, "tools": "\n".join(t.describe_input() for t in tools.values()),
                "tool_names": ", ".join(tools)}

    async def step(self, turn: Turn, tools: Tools, messages: list[dict[str, Any]], number: int, final: bool,
                   out: Step) -> AsyncIterator[ChatEvent]:
        schema = step_schema([] if final else list(tools))
        params = turn.params(response_format={"type": "json_schema",
                                              "json_schema": {"name": "agent_step", "schema": schema}})
        buffer, start, sent = "", -1, 0
        async with closing(turn.generate(messages, params)) as stream:
            async for d in stream:
                buffer += d.text
                if start < 0:
                    m = _FINAL_START.search(buffer)
                    start = m.end() if m else -1
                if start >= 0:
                    text, _closed = partial_json_string(buffer[start:])
                    if len(text) > sent:
                        yield delta(text[sent:])
                        sent = len(text)
        answer: str | None
        try:
            obj = json.loads(buffer)
        except json.JSONDecodeError:
            if sent:  # a final answer cut short by max_tokens: what was streamed is the answer
                out.done = out.cut_short = True
                return
            m = _THOUGHT.match(buffer)
            if m:  # cut short before any answer: no call is made from a partial step
                thought, call = partial_json_string(buffer[m.end():])[0], None
                answer = thought or "(the reply was cut off by max_tokens)"
            else:  # the backend ignored the grammar: read the text as ReAct
                thought, call = parse_react(buffer, tools, f"call_{number}")
                answer = None if call else thought
        else:
            thought, call, answer = json_call(obj, tools, f"call_{number}")
        if answer is not None or call is None or final:
            rest = "" if sent else answer if answer is not None else (thought or no_answer(turn))
            for event in out.finish(rest):
                yield event
            return
        out.one_call(call, thought, buffer)

    def observation(self, call: Call, result: str) -> dict[str, Any]:
        return {"role": "user", "content": f"Result of {call.name}: {result}"}


def step_schema(tool_names: list[str]) -> dict[str, Any]:
    """One agent step as a JSON schema (compiled by the backend into a grammar): a call to a listed tool
    with a bounded input, or the final answer."""
    def variant(actions: list[str], max_input: int | None) -> dict[str, Any]:
        text: dict[str, Any] = {"type": "string"}
        if max_input:
            text["maxLength"] = max_input
        return {"type": "object", "properties": {
            "thought": {"type": "string", "maxLength": 300},
            "action": {"type": "string", "enum": actions},
            "action_input": text},
            "required": ["thought", "action", "action_input"]}

    final = variant([FINAL], None)
    return {"anyOf": [variant(tool_names, MAX_TOOL_INPUT), final]} if tool_names else final


def partial_json_string(body: str) -> tuple[str, bool]:
    """Decode a JSON string body (after its opening quote) as far as it is complete: (text, closed)."""
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == '"':
            return "".join(out), True
        if c == "\\":
            if i + 1 >= len(body):
                break
            e = body[i + 1]
            if e == "u":
                if i + 6 > len(body):
                    break
                try:
                    out.append(chr(int(body[i + 2:i + 6], 16)))
                except ValueError:
                    pass
                i += 6
                continue
            out.append(_ESCAPES.get(e, e))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out), False


def json_call(obj: Any, tools: Tools, call_id: str) -> tuple[str, Call | None, str | None]:
    """(thought, call, final answer) from one parsed JSON step."""
    if not isinstance(obj, dict):
        return "", Call(call_id, "?", error="the step must be a JSON object"), None
    thought = str(obj.get("thought") or "").strip()
    action = str(obj.get("action") or "")
    value = obj.get("action_input")
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False) if value is not None else ""
    if action == FINAL:
        return thought, None, text
    if action not in tools:
        return thought, Call(call_id, action, error=f"unknown tool '{action}'; use one of {', '.join(tools)}"), None
    tool = tools[action]
    if isinstance(value, dict):
        args: dict[str, Any] = value
    elif tool.main_argument:
        args = {tool.main_argument: text}
    else:  # a tool whose arguments are all optional (current_time): the input is only a hint
        props = list(tool.parameters.get("properties", {}))
        args = {props[0]: text.strip()} if props and _looks_like_zone(text) else {}
    return thought, checked(Call(call_id, action, args), tool), None


def _looks_like_zone(text: str) -> bool:
    t = text.strip()
    return t == "UTC" or bool(re.fullmatch(r"[A-Za-z_]+/[A-Za-z_+\-/]+", t))
