"""The agent: a tool-calling loop with a step limit, every call and result streamed as events.

One shared loop (loop.py) drives one of three step protocols, a module each:
- native: tools passed to the model, whose chat template formats them (Qwen's does);
- json_steps (the default without native support): each step is one JSON object {thought, action,
  action_input}, constrained by a JSON-schema grammar whose `action` is an enum of the tool names, so
  even a very small model can only produce well-formed calls to tools that exist;
- react: the classic text protocol (Thought / Action / Action Input / Observation / Final Answer),
  parsed leniently, for backends without grammars.
A malformed call is never executed: the model gets the error as the observation and may try again,
within the same step limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from zhiku.chat.agent.json_steps import JsonSteps
from zhiku.chat.agent.loop import StepProtocol, run_loop
from zhiku.chat.agent.native import NativeSteps
from zhiku.chat.agent.react import ReactSteps
from zhiku.chat.agent.tools import Tool, calculator_tool, kb_search_tool, time_tool
from zhiku.chat.errors import ChatError
from zhiku.chat.turn import Turn
from zhiku.chat.types import ChatEvent, closing

PROTOCOLS: dict[str, StepProtocol] = {"native": NativeSteps(), "react": ReactSteps(), "json": JsonSteps()}


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


async def run(turn: Turn) -> AsyncIterator[ChatEvent]:
    tools = await asyncio.to_thread(build_tools, turn)
    if not tools:
        raise ChatError("the agent has no tools to use")
    await turn.ensure_llm()
    async with closing(run_loop(turn, tools, PROTOCOLS[choose_protocol(turn)])) as events:
        async for event in events:
            yield event
