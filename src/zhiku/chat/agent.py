"""The agent: a tool-calling loop with a step limit, every call and result streamed as events.

Three protocols:
- native: tools passed to the model, whose chat template formats them (Qwen's does);
- json (the default without native support): each step is one JSON object {thought, action,
  action_input}, constrained by a JSON-schema grammar whose `action` is an enum of the tool names, so
  even a very small model can only produce well-formed calls to tools that exist;
- react: the classic text protocol (Thought / Action / Action Input / Observation / Final Answer),
  parsed leniently, for backends without grammars.
A malformed call is never executed: the model gets the error as the observation and may try again,
within the same step limit.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from zhiku.chat.errors import ChatError
from zhiku.chat.models import ChatEvent, closing, delta
from zhiku.chat.tools import Tool, ToolError, calculator_tool, kb_search_tool, time_tool, truncate
from zhiku.chat.turn import Turn

TOOL_TIMEOUT = 30.0
FINAL_MARKER = "Final Answer:"
STOP = ["Observation:", "\nObservation"]
LIMIT_NOTE_NATIVE = ("The step limit is reached: no more tools. Give your final answer now, "
                     "using what the tools returned.")
LIMIT_NOTE_REACT = "Observation: the step limit is reached, no more tools. Write your Final Answer now."
_ACTION = re.compile(r"Action\s*\d*\s*:\s*(?P<name>[^\n]*)(?:\n+\s*Action\s*\d*\s*Input\s*\d*\s*:\s*(?P<input>.*))?",
                     re.DOTALL | re.IGNORECASE)


@dataclass
class Call:
    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # set when the call is malformed: it is reported, not executed

    def event(self, step: int, thought: str = "") -> ChatEvent:
        data: dict[str, Any] = {"id": self.id, "name": self.name, "arguments": self.arguments, "step": step,
                                "valid": self.error is None}
        if self.error:
            data["error"] = self.error
        if thought:
            data["thought"] = thought
        return ChatEvent("tool_call", data)


def build_tools(turn: Turn) -> list[Tool]:
    names = [k.name for k in turn.kb.list()]
    tools = [calculator_tool(), time_tool()]
    if names or turn.request.kb:
        def search(kb: str, query: str) -> list[Any]:
            return turn.kb.search(kb, query, top_k=turn.top_k, score_threshold=turn.score_threshold)

        tools.append(kb_search_tool(search, turn.request.kb, names))
    wanted = turn.request.tools
    if wanted is not None:
        unknown = set(wanted) - {t.name for t in tools}
        if unknown:
            raise ChatError(f"unknown tool(s): {', '.join(sorted(unknown))}; "
                            f"available: {', '.join(t.name for t in tools)}")
        tools = [t for t in tools if t.name in wanted]
    return tools


def choose_protocol(turn: Turn) -> str:
    """The request's choice, else by backend. An upstream engine (vLLM, Ollama, llama-server) does tool
    calls server-side -> native. llama.cpp in process -> json: measured with the default
    qwen2.5-coder-0.5b (whose template does render tools), native calls gave one good call, then
    malformed ones and no answer within 3 steps, while the json protocol answered 23 * 19 in one step.
    chatglm.cpp has no grammars -> react."""
    if turn.request.agent_protocol != "auto":
        return turn.request.agent_protocol
    return {"openai": "native", "chatglm_cpp": "react"}.get(turn.settings.llm_backend, "json")


def result_event(call: Call, result: str, ok: bool, step: int) -> ChatEvent:
    """The tool_result event every protocol streams after running a call."""
    return ChatEvent("tool_result", {"id": call.id, "name": call.name, "result": result, "ok": ok, "step": step})


async def execute(call: Call, tools: dict[str, Tool]) -> tuple[str, bool]:
    """Run one call; (result text, ok). Errors become the result so the model can correct itself."""
    if call.error:
        return f"error: {call.error}", False
    tool = tools[call.name]
    try:
        result = await asyncio.wait_for(tool.run(tool.check(call.arguments)), TOOL_TIMEOUT)
    except ToolError as e:
        return f"error: {e}", False
    except TimeoutError:
        return f"error: {call.name} took longer than {TOOL_TIMEOUT:g} s", False
    except Exception as e:  # a tool failing must not end the conversation
        return f"error: {call.name} failed: {type(e).__name__}: {e}", False
    return truncate(result), True


def native_call(raw: dict[str, Any], tools: dict[str, Tool], fallback_id: str) -> Call:
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
    try:
        tools[name].check(args)
    except ToolError as e:
        call.error = str(e)
    return call


_CALL_STARTS = ("{", "```", "<tool_call>")


def bare_tool_calls(text: str, tools: dict[str, Tool]) -> list[dict[str, Any]]:
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


def parse_react(text: str, tools: dict[str, Tool], call_id: str) -> tuple[str, Call | None]:
    """(thought, call) from one ReAct step; call is None when the step has no Action."""
    match = _ACTION.search(text)
    if not match:
        return text.strip(), None
    thought = re.sub(r"^\s*Thought\s*:\s*", "", text[:match.start()].strip(), flags=re.IGNORECASE)
    name = match.group("name").strip().strip("`'\"[]().,;:").strip()
    call = Call(call_id, name)
    lowered = {k.lower(): k for k in tools}
    if name.lower() in lowered:
        call.name = lowered[name.lower()]
    else:
        call.error = f"unknown tool '{name}'; use one of {', '.join(tools)}"
        return thought, call
    tool = tools[call.name]
    raw = (match.group("input") or "").strip()
    raw = re.sub(r"^```(?:json)?\s*|\s*```$", "", raw).strip()
    args: Any = {}
    if raw:
        start = raw.find("{")
        try:
            args = json.JSONDecoder().raw_decode(raw[start:])[0] if start >= 0 else json.loads(raw)
        except json.JSONDecodeError:
            args = raw.splitlines()[0].strip().strip("\"'`")  # a bare value, e.g. Action Input: 2 + 2
    if not isinstance(args, dict):
        if tool.main_argument is None:
            call.error = f"{tool.name} takes a JSON object of arguments"
            return thought, call
        args = {tool.main_argument: str(args)}
    call.arguments = args
    try:
        tool.check(args)
    except ToolError as e:
        call.error = str(e)
    return thought, call


def _max_steps(turn: Turn) -> int:
    return turn.request.max_steps or turn.settings.agent_max_steps



def _end(turn: Turn, step: int, final: bool) -> None:
    """Record the tool steps taken; an answer forced by the step limit finishes as max_steps."""
    turn.timings["agent_steps"] = step - 1
    if final:
        turn.finish_reason = "max_steps"


async def run_native(turn: Turn, tools: list[Tool]) -> AsyncIterator[ChatEvent]:
    by_name = {t.name: t for t in tools}
    template = turn.template("agent", "native")
    messages, _ = await asyncio.to_thread(turn.fit, template, {"question": turn.query}, [])
    specs = [t.spec() for t in tools]
    max_steps = _max_steps(turn)
    for step in range(1, max_steps + 2):
        final = step > max_steps
        if final:
            messages.append({"role": "user", "content": LIMIT_NOTE_NATIVE})
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
            bare = bare_tool_calls(text, by_name)
            if bare:  # some models (Qwen2.5-Coder) write calls without <tool_call> tags
                acc, text = dict(enumerate(bare)), ""
            elif text.lstrip().startswith("{") and '"name"' in text:
                # A call that is not valid JSON (or cut off by max_tokens): report it, let the model retry.
                acc = {0: {"id": "", "function": {"name": "?", "arguments": "{"}}}
                text = ""
            else:
                yield delta(text)
        if not acc:
            _end(turn, step, final)
            return
        calls = [native_call(raw, by_name, f"call_{step}_{i}") for i, raw in sorted(acc.items())]
        messages.append({"role": "assistant", "content": text, "tool_calls": [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)}}
            for c in calls]})
        for call in calls:
            yield call.event(step)
            result, ok = await execute(call, by_name)
            yield result_event(call, result, ok, step)
            messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": result})


async def run_react(turn: Turn, tools: list[Tool]) -> AsyncIterator[ChatEvent]:
    by_name = {t.name: t for t in tools}
    template = turn.template("agent")
    values = {"question": turn.query, "tools": "\n".join(t.describe() for t in tools),
              "tool_names": ", ".join(by_name)}
    messages, _ = await asyncio.to_thread(turn.fit, template, values, [])
    max_steps = _max_steps(turn)
    for step in range(1, max_steps + 2):
        final = step > max_steps
        if final:
            messages.append({"role": "user", "content": LIMIT_NOTE_REACT})
        buffer, emitted = "", -1  # emitted: how much of buffer went out as answer (-1: not answering yet)
        async with closing(turn.generate(messages, turn.params(stop=STOP))) as stream:
            async for d in stream:
                buffer += d.text
                if emitted < 0 and FINAL_MARKER in buffer:
                    emitted = buffer.index(FINAL_MARKER) + len(FINAL_MARKER)
                    while emitted < len(buffer) and buffer[emitted].isspace():
                        emitted += 1
                if emitted >= 0 and len(buffer) > emitted:
                    yield delta(buffer[emitted:])
                    emitted = len(buffer)
        if emitted >= 0:
            _end(turn, step, final)
            return
        thought, call = parse_react(buffer, by_name, f"call_{step}")
        if call is None or final:
            # No action and no "Final Answer:": the model answered directly; its text is the answer.
            answer = thought if call is None else (thought or f"(no final answer after {max_steps} steps)")
            if answer:
                yield delta(answer)
            _end(turn, step, final)
            return
        yield call.event(step, thought)
        result, ok = await execute(call, by_name)
        yield result_event(call, result, ok, step)
        messages.append({"role": "assistant", "content": buffer.strip()})
        messages.append({"role": "user", "content": f"Observation: {result}"})


FINAL = "final_answer"
MAX_TOOL_INPUT = 300  # characters: keeps a looping small model from filling max_tokens with one input
_THOUGHT = re.compile(r'^\s*\{\s*"thought"\s*:\s*"')
_FINAL_START = re.compile(r'"action"\s*:\s*"final_answer"\s*,\s*"action_input"\s*:\s*"')
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\", '"': '"'}


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


def json_call(obj: Any, tools: dict[str, Tool], call_id: str) -> tuple[str, Call | None, str | None]:
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
    call = Call(call_id, action, args)
    try:
        tool.check(args)
    except ToolError as e:
        call.error = str(e)
    return thought, call, None


def _looks_like_zone(text: str) -> bool:
    t = text.strip()
    return t == "UTC" or bool(re.fullmatch(r"[A-Za-z_]+/[A-Za-z_+\-/]+", t))


async def run_json(turn: Turn, tools: list[Tool]) -> AsyncIterator[ChatEvent]:
    by_name = {t.name: t for t in tools}
    template = turn.template("agent", "json")
    values = {"question": turn.query, "tools": "\n".join(t.describe_input() for t in tools),
              "tool_names": ", ".join(by_name)}
    messages, _ = await asyncio.to_thread(turn.fit, template, values, [])
    max_steps = _max_steps(turn)
    for step in range(1, max_steps + 2):
        final = step > max_steps
        if final:
            messages.append({"role": "user", "content": LIMIT_NOTE_JSON})
        schema = step_schema([] if final else list(by_name))
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
        try:
            obj = json.loads(buffer)
        except json.JSONDecodeError:
            if sent:  # a final answer cut short by max_tokens: what was streamed is the answer
                turn.timings["agent_steps"] = step - 1
                return
            m = _THOUGHT.match(buffer)
            if m:  # cut short before any answer: no call is made from a partial step
                thought, call = partial_json_string(buffer[m.end():])[0], None
                answer: str | None = thought or "(the reply was cut off by max_tokens)"
            else:  # the backend ignored the grammar: read the text as ReAct
                thought, call = parse_react(buffer, by_name, f"call_{step}")
                answer = None if call else thought
        else:
            thought, call, answer = json_call(obj, by_name, f"call_{step}")
        if answer is not None or call is None or final:
            if not sent:
                out = answer if answer is not None else (thought or f"(no final answer after {max_steps} steps)")
                if out:
                    yield delta(out)
            _end(turn, step, final)
            return
        yield call.event(step, thought)
        result, ok = await execute(call, by_name)
        yield result_event(call, result, ok, step)
        messages.append({"role": "assistant", "content": buffer.strip()})
        messages.append({"role": "user", "content": f"Result of {call.name}: {result}"})


LIMIT_NOTE_JSON = "The step limit is reached: no more tools. Give your final_answer now."
PROTOCOLS = {"native": run_native, "react": run_react, "json": run_json}


async def run(turn: Turn) -> AsyncIterator[ChatEvent]:
    tools = await asyncio.to_thread(build_tools, turn)
    if not tools:
        raise ChatError("the agent has no tools to use")
    await turn.ensure_llm()
    loop = PROTOCOLS[choose_protocol(turn)]
    async with closing(loop(turn, tools)) as events:
        async for event in events:
            yield event
