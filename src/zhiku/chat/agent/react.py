"""The ReAct step protocol: Thought / Action / Action Input / Observation / Final Answer as plain text,
parsed leniently, for backends without grammars (chatglm.cpp)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from zhiku.chat.agent.loop import Call, Step, StepProtocol, Tools, checked, no_answer
from zhiku.chat.turn import Turn
from zhiku.chat.types import ChatEvent, closing, delta

FINAL_MARKER = "Final Answer:"
STOP = ["Observation:", "\nObservation"]
_ACTION = re.compile(r"Action\s*\d*\s*:\s*(?P<name>[^\n]*)(?:\n+\s*Action\s*\d*\s*Input\s*\d*\s*:\s*(?P<input>.*))?",
                     re.DOTALL | re.IGNORECASE)


class ReactSteps(StepProtocol):
    limit_note = "Observation: the step limit is reached, no more tools. Write your Final Answer now."

    def values(self, turn: Turn, tools: Tools) -> dict[str, str]:
        return {"question": turn.query, "tools": "\n".join(t.describe() for t in tools.values()),
                "tool_names": ", ".join(tools)}

    async def step(self, turn: Turn, tools: Tools, messages: list[dict[str, Any]], number: int, final: bool,
                   out: Step) -> AsyncIterator[ChatEvent]:
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
            out.done = True
            return
        thought, call = parse_react(buffer, tools, f"call_{number}")
        if call is None or final:
            # No action and no "Final Answer:": the model answered directly; its text is the answer.
            for event in out.finish(thought if call is None else (thought or no_answer(turn))):
                yield event
            return
        out.one_call(call, thought, buffer)

    def observation(self, call: Call, result: str) -> dict[str, Any]:
        return {"role": "user", "content": f"Observation: {result}"}


def parse_react(text: str, tools: Tools, call_id: str) -> tuple[str, Call | None]:
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
    return thought, checked(call, tool)
