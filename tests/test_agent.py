"""The agent loop with a scripted model: tool dispatch, arguments, malformed calls, the step limit.

The scripted model stands in for the LLM to force exact tool-call sequences (including malformed ones)
that a real small model would produce only by chance; the real model runs the agent in test_chat_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ScriptedModel
from zhiku.chat.service import ChatService
from zhiku.chat.types import ChatEvent, ChatRequest, ChatResult
from zhiku.config import Settings
from zhiku.kb.types import Hit, KBInfo, KBNotFound
from zhiku.llm.base import ChatDelta, GenerationParams, Usage

Step = str | list[dict[str, Any]]  # text, or native tool calls


class ScriptedLLM(ScriptedModel):
    """Replays one scripted reply per call and records what it was asked."""

    def __init__(self, script: list[Step], native: bool = False) -> None:
        self.script = list(script)
        self.native = native
        self.calls: list[tuple[list[dict[str, Any]], GenerationParams]] = []

    def supports_tools(self, model: str | None = None) -> bool:
        return self.native

    async def chat(self, messages: list[dict[str, Any]], params: GenerationParams,
                   model: str | None = None) -> AsyncIterator[ChatDelta]:
        self.calls.append((json.loads(json.dumps(messages)), params))
        step = self.script.pop(0) if self.script else "Final Answer: (script exhausted)"
        if isinstance(step, list):
            yield ChatDelta(tool_calls=step)
        else:
            for i in range(0, len(step), 7):  # stream in small pieces, as a model does
                yield ChatDelta(text=step[i:i + 7])
        yield ChatDelta(finish_reason="tool_calls" if isinstance(step, list) else "stop", usage=Usage(10, 5))


class OneKB:
    """A knowledge base with one passage, so the agent offers its search tool."""

    def list(self, include_temporary: bool = False) -> list[KBInfo]:
        return [KBInfo("manual", "", "use-m3", 512, 500, 100, False, 0.0)]

    def search(self, name: str, query: str, **kw: Any) -> list[Hit]:
        if name != "manual":
            raise KBNotFound(f"knowledge base '{name}' not found")
        return [Hit(1, 1, "manual.md", "The reset button is on the back panel.", 0.9)]

    def expire_temporary(self, now: float | None = None) -> list[str]:
        return []


def call(name: str, arguments: Any, id_: str = "") -> dict[str, Any]:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": args}}


def ask(tmp_path: Path, llm: ScriptedLLM, query: str, **kw: Any) -> tuple[list[ChatEvent], ChatResult]:
    # an upstream engine whose model takes tools gets native calls; llama.cpp gets the JSON protocol
    settings = Settings(home=tmp_path, agent_max_steps=kw.pop("max_steps", 5),
                        llm_backend="openai" if llm.native else "llama_cpp")
    service = ChatService(settings, llm, OneKB())  # type: ignore[arg-type]

    async def go() -> list[ChatEvent]:
        return [e async for e in service.stream(ChatRequest(query=query, mode="agent", **kw))]

    try:
        events = asyncio.run(go())
    finally:
        service.close()
    return events, ChatResult.from_events(events)


def types(events: list[ChatEvent]) -> list[str]:
    return [e.type for e in events if e.type != "delta"]


def test_native_tool_call_dispatch(tmp_path: Path) -> None:
    llm = ScriptedLLM([[call("calculator", {"expression": "6 * 7"}, "c-1")], "It is 42."], native=True)
    events, result = ask(tmp_path, llm, "What is 6 times 7?")
    assert types(events) == ["tool_call", "tool_result", "done"]
    assert result.tool_calls == [{"id": "c-1", "name": "calculator", "arguments": {"expression": "6 * 7"},
                                  "step": 1, "valid": True, "result": "42", "ok": True}]
    assert result.answer == "It is 42."
    first, second = llm.calls
    assert {t["function"]["name"] for t in first[1].tools or []} == {"calculator", "current_time", "kb_search"}
    tool_msg = second[0][-1]
    assert tool_msg == {"role": "tool", "tool_call_id": "c-1", "name": "calculator", "content": "42"}
    assert second[0][-2]["tool_calls"][0]["function"]["name"] == "calculator"
    assert result.usage == {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}


def test_native_fragments_and_kb_tool(tmp_path: Path) -> None:
    # OpenAI-style streamed fragments of one call, merged by index
    fragments = [{"index": 0, "id": "k1", "function": {"name": "kb_search", "arguments": '{"query": "re'}},
                 {"index": 0, "function": {"arguments": 'set button"}'}}]
    llm = ScriptedLLM([fragments, "On the back panel."], native=True)
    events, result = ask(tmp_path, llm, "Where is the reset button?", kb="manual")
    assert result.tool_calls[0]["arguments"] == {"query": "reset button"}
    assert "back panel" in result.tool_calls[0]["result"] and result.tool_calls[0]["ok"]


def test_native_malformed_calls_are_reported_not_run(tmp_path: Path) -> None:
    llm = ScriptedLLM([[call("shell", {"cmd": "rm -rf /"}, "a"), call("calculator", "{not json", "b"),
                        call("calculator", {"expr": "1+1"}, "c")],
                       "Sorry, I could not compute it."], native=True)
    events, result = ask(tmp_path, llm, "Compute something")
    assert [c["valid"] for c in result.tool_calls] == [False, False, False]
    assert [c["ok"] for c in result.tool_calls] == [False, False, False]
    assert "unknown tool 'shell'" in result.tool_calls[0]["result"]
    assert "not valid JSON" in result.tool_calls[1]["result"]
    assert "unknown argument(s) expr" in result.tool_calls[2]["result"]
    # each error went back to the model as that call's result
    tool_msgs = [m for m in llm.calls[1][0] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_msgs] == ["a", "b", "c"]
    assert result.answer == "Sorry, I could not compute it." and result.error is None


def test_step_limit(tmp_path: Path) -> None:
    llm = ScriptedLLM([[call("current_time", {})]] * 10 + ["Done."], native=True)
    events, result = ask(tmp_path, llm, "loop forever", max_steps=3)
    assert len(result.tool_calls) == 3
    assert len(llm.calls) == 4  # three steps with tools, then one last call without them
    assert llm.calls[-1][1].tools is None and "step limit" in llm.calls[-1][0][-1]["content"]
    assert result.finish_reason == "max_steps"
    assert [e.data["step"] for e in events if e.type == "tool_call"] == [1, 2, 3]


def test_react_protocol(tmp_path: Path) -> None:
    llm = ScriptedLLM(['Thought: I need the calculator.\nAction: calculator\nAction Input: {"expression": "2^10"}',
                       "Thought: I know it.\nFinal Answer: 2 to the 10th is 1024."])
    events, result = ask(tmp_path, llm, "What is 2 to the 10th?", agent_protocol="react")
    assert types(events) == ["tool_call", "tool_result", "done"]
    assert result.tool_calls[0]["thought"] == "I need the calculator."
    assert result.tool_calls[0]["result"] == "1024"
    assert result.answer == "2 to the 10th is 1024."  # only the final answer is streamed as text
    params = llm.calls[0][1]
    assert params.tools is None and "Observation:" in params.stop
    assert "calculator:" in llm.calls[0][0][0]["content"]  # tools described in the system prompt
    assert llm.calls[1][0][-1] == {"role": "user", "content": "Observation: 1024"}


def test_react_lenient_and_malformed(tmp_path: Path) -> None:
    llm = ScriptedLLM(["Action: `Calculator`\nAction Input: 3 + 4",       # bare input, odd casing: fine
                       "Action: shell\nAction Input: ls /",                # unknown tool: reported
                       "Action: calculator\nAction Input: {\"expression\": 1}",  # wrong type: reported
                       "The sum is 7."])                                   # no marker: taken as the answer
    events, result = ask(tmp_path, llm, "3 + 4?", agent_protocol="react")
    assert [(c["name"], c["valid"], c["ok"]) for c in result.tool_calls] == [
        ("calculator", True, True), ("shell", False, False), ("calculator", False, False)]
    assert result.tool_calls[0]["arguments"] == {"expression": "3 + 4"} and result.tool_calls[0]["result"] == "7"
    assert "must be a string" in result.tool_calls[2]["result"]
    assert result.answer == "The sum is 7."


def test_react_step_limit_and_unknown_tool_filter(tmp_path: Path) -> None:
    llm = ScriptedLLM(["Action: current_time\nAction Input: {}"] * 2 + ["Final Answer: it is late"])
    _, result = ask(tmp_path, llm, "time?", max_steps=2, agent_protocol="react")
    assert len(result.tool_calls) == 2 and result.answer == "it is late" and result.finish_reason == "max_steps"
    assert "step limit" in llm.calls[-1][0][-1]["content"]
    # still calling tools at the limit: the loop ends anyway, with its thought as the answer
    llm = ScriptedLLM(["Thought: again\nAction: current_time\nAction Input: {}"] * 3)
    _, result = ask(tmp_path, llm, "time?", max_steps=2, agent_protocol="react")
    assert len(result.tool_calls) == 2 and result.answer == "again" and len(llm.calls) == 3
    _, bad = ask(tmp_path, ScriptedLLM([]), "x", tools=["shell"])
    assert bad.error is not None and "unknown tool(s): shell" in bad.error


def test_agent_answer_is_stored(tmp_path: Path) -> None:
    llm = ScriptedLLM([[call("calculator", {"expression": "1+1"})], "Two."], native=True)
    _, result = ask(tmp_path, llm, "1+1?")
    settings = Settings(home=tmp_path)
    service = ChatService(settings, llm, OneKB())  # type: ignore[arg-type]
    try:
        assert result.conversation_id is not None
        conv = service.get_conversation(result.conversation_id)
        stored = conv["messages"][-1]
        assert stored["content"] == "Two." and stored["mode"] == "agent"
        assert stored["tool_calls"][0]["result"] == "2"
        assert "tool `calculator`" in service.export_markdown(result.conversation_id)
    finally:
        service.close()


@pytest.mark.parametrize("protocol", ["native", "json", "react"])
def test_llm_failure_mid_stream_is_an_error_event_and_nothing_stored(tmp_path: Path, protocol: str) -> None:
    class Failing(ScriptedLLM):
        async def chat(self, messages: list[dict[str, Any]], params: GenerationParams,
                       model: str | None = None) -> AsyncIterator[ChatDelta]:
            yield ChatDelta(text="partial")
            raise RuntimeError("engine died")

    events, result = ask(tmp_path, Failing([], native=protocol == "native"), "q", agent_protocol=protocol)
    assert events[-1].type == "error" and "engine died" in events[-1].data["message"]
    settings = Settings(home=tmp_path)
    service = ChatService(settings, ScriptedLLM([]), OneKB())  # type: ignore[arg-type]
    try:
        conv = service.list_conversations()[0]
        assert [m["role"] for m in service.get_conversation(conv["id"])["messages"]] == ["user"]
    finally:
        service.close()


def step(action: str, action_input: str, thought: str = "ok") -> str:
    return json.dumps({"thought": thought, "action": action, "action_input": action_input})


def test_json_protocol_is_the_default_without_native_tools(tmp_path: Path) -> None:
    final = 'It is "42".\nYes — 四十二'
    llm = ScriptedLLM([step("calculator", "6*7", "use the calculator"), step("final_answer", final)])
    events, result = ask(tmp_path, llm, "What is 6 times 7?")
    assert types(events) == ["tool_call", "tool_result", "done"]
    assert result.tool_calls[0]["arguments"] == {"expression": "6*7"} and result.tool_calls[0]["result"] == "42"
    assert result.tool_calls[0]["thought"] == "use the calculator"
    assert result.answer == final  # decoded from the JSON string while it streamed
    assert len([e for e in events if e.type == "delta"]) > 1
    schema = llm.calls[0][1].response_format["json_schema"]["schema"]
    assert {"calculator", "current_time", "kb_search"} == set(schema["anyOf"][0]["properties"]["action"]["enum"])
    assert schema["anyOf"][1]["properties"]["action"]["enum"] == ["final_answer"]
    assert llm.calls[1][0][-1] == {"role": "user", "content": "Result of calculator: 42"}


def test_json_protocol_odd_steps(tmp_path: Path) -> None:
    llm = ScriptedLLM([step("shell", "ls /"),                         # a backend that ignored the grammar
                       step("current_time", "now"),                    # optional input that is not a zone
                       "Action: calculator\nAction Input: 1 + 2",     # plain text: read as ReAct
                       '{"thought": "I was thinking about'])          # cut off by max_tokens
    _, result = ask(tmp_path, llm, "hm?")
    assert [(c["name"], c["valid"], c["ok"]) for c in result.tool_calls] == [
        ("shell", False, False), ("current_time", True, True), ("calculator", True, True)]
    assert result.tool_calls[1]["arguments"] == {} and result.tool_calls[2]["result"] == "3"
    assert result.answer == "I was thinking about"


def test_json_protocol_step_limit(tmp_path: Path) -> None:
    llm = ScriptedLLM([step("current_time", "UTC")] * 2 + [step("final_answer", "late")])
    _, result = ask(tmp_path, llm, "time?", max_steps=2)
    assert [c["arguments"] for c in result.tool_calls] == [{"timezone": "UTC"}] * 2
    assert result.answer == "late" and result.finish_reason == "max_steps"
    last_schema = llm.calls[-1][1].response_format["json_schema"]["schema"]
    assert last_schema["properties"]["action"]["enum"] == ["final_answer"]  # no tools at the limit


def test_partial_json_string() -> None:
    from zhiku.chat.agent.json_steps import partial_json_string

    assert partial_json_string('ab\\n\\"c\\u00e9" tail') == ('ab\n"cé', True)
    assert partial_json_string("abc\\") == ("abc", False)
    assert partial_json_string("abc\\u00") == ("abc", False)


def test_native_bare_json_calls_and_malformed_text(tmp_path: Path) -> None:
    llm = ScriptedLLM(['```json\n{"name": "calculator", "arguments": {"expression": "2*3"}}\n'
                       '{"name": "current_time", "arguments": {}}\n```',       # untagged calls, as Qwen-Coder writes
                       '{"name": "calculator", "arguments": {"expression": "2*',  # cut off
                       "Six."], native=True)
    events, result = ask(tmp_path, llm, "2*3?")
    assert [(c["name"], c["valid"], c["ok"]) for c in result.tool_calls] == [
        ("calculator", True, True), ("current_time", True, True), ("?", False, False)]
    assert result.answer == "Six."  # the JSON was never shown as answer text
    assert [e.data["text"] for e in events if e.type == "delta"] == ["Six."]
