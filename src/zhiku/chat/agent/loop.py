"""The loop every step protocol shares: ask the model for a step, run the calls it makes, feed the results
back, until it answers or the step limit forces an answer (one more step, without tools)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from zhiku.chat.agent.tools import Tool, ToolError, truncate
from zhiku.chat.turn import Turn
from zhiku.chat.types import ChatEvent, closing, delta

TOOL_TIMEOUT = 30.0
Tools = dict[str, Tool]


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


@dataclass
class Step:
    """What one reply of the model came to: an answer (`done`; its text was streamed as deltas), or calls
    to run after putting `reply` (the model's own message) into the conversation."""

    done: bool = False
    cut_short: bool = False  # the answer was cut off by max_tokens: keep the model's finish reason
    calls: list[Call] = field(default_factory=list)
    thought: str = ""
    reply: dict[str, Any] | None = None

    def finish(self, text: str) -> list[ChatEvent]:
        """End the turn: `text` is the answer, or what is left of it to send (empty when all went out)."""
        self.done = True
        return [delta(text)] if text else []

    def one_call(self, call: Call, thought: str, reply_text: str) -> None:
        """Run one call; the model's reply goes into the conversation before the call's result."""
        self.calls, self.thought = [call], thought
        self.reply = {"role": "assistant", "content": reply_text.strip()}


class StepProtocol:
    """How one step is asked for and read. Subclasses: native.py, json_steps.py, react.py."""

    template: str | None = None  # the prompt template's name in prompts.toml (None: the mode's default)
    limit_note: str = ""  # the user message that forces the answer once the step limit is reached

    def values(self, turn: Turn, tools: Tools) -> dict[str, str]:
        return {"question": turn.query}

    def step(self, turn: Turn, tools: Tools, messages: list[dict[str, Any]], number: int, final: bool,
             out: Step) -> AsyncIterator[ChatEvent]:
        """Generate one step, streaming any answer text as deltas, and fill in `out`."""
        raise NotImplementedError

    def observation(self, call: Call, result: str) -> dict[str, Any]:
        """The message that gives the model a call's result."""
        raise NotImplementedError


async def execute(call: Call, tools: Tools) -> tuple[str, bool]:
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


def checked(call: Call, tool: Tool) -> Call:
    """The call, marked malformed if its arguments do not fit the tool."""
    try:
        tool.check(call.arguments)
    except ToolError as e:
        call.error = str(e)
    return call


def max_steps(turn: Turn) -> int:
    return turn.request.max_steps or turn.settings.agent_max_steps


def no_answer(turn: Turn) -> str:
    """What a forced last step says when the model gave no answer at all."""
    return f"(no final answer after {max_steps(turn)} steps)"


async def run_loop(turn: Turn, tools: list[Tool], protocol: StepProtocol) -> AsyncIterator[ChatEvent]:
    by_name = {t.name: t for t in tools}
    template = turn.template("agent", protocol.template)
    messages, _ = await asyncio.to_thread(turn.fit, template, protocol.values(turn, by_name), [])
    limit = max_steps(turn)
    for number in range(1, limit + 2):
        final = number > limit
        if final:
            messages.append({"role": "user", "content": protocol.limit_note})
        step = Step()
        async with closing(protocol.step(turn, by_name, messages, number, final, step)) as events:
            async for event in events:
                yield event
        if step.done or final:
            turn.timings["agent_steps"] = number - 1
            if final and not step.cut_short:
                turn.finish_reason = "max_steps"
            return
        if step.reply is not None:
            messages.append(step.reply)
        for call in step.calls:
            yield call.event(number, step.thought)
            result, ok = await execute(call, by_name)
            yield ChatEvent("tool_result", {"id": call.id, "name": call.name, "result": result, "ok": ok,
                                            "step": number})
            messages.append(protocol.observation(call, result))
