"""Chat building blocks without a model: templates, context fitting, events, history store, calculator,
and the SearXNG client against a loopback server speaking its JSON format."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import searxng_stub
from zhiku.chat.agent.tools import ToolError, calculate, current_time
from zhiku.chat.errors import ChatError, MessageNotFound
from zhiku.chat.history import HistoryStore, pair_turns
from zhiku.chat.prompts import PromptStore, detect_language, fit_passages, render
from zhiku.chat.types import ChatEvent, ChatResult
from zhiku.search_engines import SearchError
from zhiku.search_engines.searxng import SearxngProvider

# templates -------------------------------------------------------------------------------------------


def test_language_detection() -> None:
    assert detect_language("什么是知识库？") == "zh"
    assert detect_language("用 Python 写一个 hello world 程序") == "zh"
    assert detect_language("What is a knowledge base?") == "en"
    assert detect_language("What does 知库 mean in this product name and why?") == "en"


def test_render_fills_placeholders_once() -> None:
    out = render("Q: {{ question }} C:{{context}} {{ other }}", {"question": "{{ context }}", "context": "x"})
    assert out == "Q: {{ context }} C:x {{ other }}"  # values are not re-expanded; unknown names stay


def test_prompt_file_copied_and_edits_picked_up(tmp_path: Path) -> None:
    store = PromptStore(tmp_path)
    zh = store.get("kb", None, "zh")
    assert "资料" in zh.user and "{{ refusal }}" in zh.system and zh.language == "zh"
    assert "根据已知信息，简洁和专业的来回答问题" in store.get("kb", "chatchat", "zh").user
    assert "Documents:" in store.get("kb", "default", "en").user
    assert (tmp_path / "prompts.toml").exists()
    with pytest.raises(ChatError, match="no prompt template 'nope'"):
        store.get("llm", "nope", "en")
    text = (tmp_path / "prompts.toml").read_text(encoding="utf-8")
    (tmp_path / "prompts.toml").write_text(text + '\n[llm.pirate]\nsystem = "Talk like a pirate."\nuser = "{{ question }}"\n',
                                           encoding="utf-8")
    time.sleep(0.01)
    import os
    os.utime(tmp_path / "prompts.toml", (time.time() + 5, time.time() + 5))
    assert store.get("llm", "pirate", "en").system == "Talk like a pirate."
    assert "pirate" in store.names()["llm"]
    messages = store.get("llm", "pirate", "en").messages([{"role": "user", "content": "hi"},
                                                          {"role": "assistant", "content": "ahoy"}],
                                                         {"question": "Where?"})
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[-1]["content"] == "Where?"


def _words(text: str) -> int:
    return len(text.split())


def _chat_words(messages: list[dict]) -> int:
    return sum(_words(m["content"]) + 2 for m in messages)


def test_fit_keeps_question_and_drops_or_trims_passages() -> None:
    question = "what is the answer to everything " * 5

    def build(context: str) -> list[dict]:
        return [{"role": "user", "content": f"{context}\nQ: {question}"}]

    passages = [("alpha " * 40).strip(), ("beta " * 40).strip(), ("gamma " * 40).strip()]
    base = _chat_words(build(""))
    messages, used = fit_passages(build, passages, _chat_words, _words, budget=base + 60, min_passage_tokens=10)
    assert used == 2  # one whole passage and a trimmed one; the third dropped
    content = messages[0]["content"]
    assert content.count("alpha") == 40 and 0 < content.count("beta") < 40 and "gamma" not in content
    assert content.endswith(f"Q: {question}")
    assert _chat_words(messages) <= base + 60
    # no room at all: no passages, the question is still there whole
    messages, used = fit_passages(build, passages, _chat_words, _words, budget=base)
    assert used == 0 and messages[0]["content"].endswith(question)


# events ----------------------------------------------------------------------------------------------


def test_events_round_trip_and_reassemble() -> None:
    events = [ChatEvent("sources", {"sources": [{"index": 1, "document": "a.md"}]}),
              ChatEvent("tool_call", {"id": "c1", "name": "calculator", "arguments": {"expression": "1+1"}}),
              ChatEvent("tool_result", {"id": "c1", "name": "calculator", "result": "2", "ok": True}),
              ChatEvent("delta", {"text": "答案"}), ChatEvent("delta", {"text": " is 2 [1]"}),
              ChatEvent("done", {"conversation_id": "c", "message_id": "m", "usage": {"prompt_tokens": 3},
                                 "timings": {"total_ms": 1.0}, "finish_reason": "stop"})]
    wire = [e.to_sse() for e in events]
    assert all(w.startswith("data: {") and w.endswith("\n\n") for w in wire)
    assert json.loads(wire[3][6:]) == {"type": "delta", "text": "答案"}
    back = [ChatEvent.from_json(w[6:].strip()) for w in wire]
    result = ChatResult.from_events(back)
    assert result.answer == "答案 is 2 [1]" and result.sources[0]["document"] == "a.md"
    assert result.tool_calls == [{"id": "c1", "name": "calculator", "arguments": {"expression": "1+1"},
                                  "result": "2", "ok": True}]
    assert (result.conversation_id, result.message_id, result.finish_reason) == ("c", "m", "stop")
    assert ChatResult.from_events([ChatEvent("error", {"message": "boom"})]).error == "boom"


# history ---------------------------------------------------------------------------------------------


def test_history_store(tmp_path: Path, database_url: str) -> None:
    """On both stores: SQLite and a real PostgreSQL."""
    from zhiku.chat.schema import HISTORY
    from zhiku.config import Settings
    from zhiku.db import open_database

    store = HistoryStore(open_database(Settings(home=tmp_path, ui=False, database_url=database_url), HISTORY))
    cid = store.ensure_conversation(None, "llm", "first question about the moon")
    store.add_message(cid, "user", "q1", "llm")
    a1 = store.add_message(cid, "assistant", "a1", "llm", usage={"completion_tokens": 2})
    store.add_message(cid, "user", "q2 (answer lost in a crash)", "llm")
    store.add_message(cid, "user", "q3", "kb")
    store.add_message(cid, "assistant", "a3 [1]", "kb", sources=[{"index": 1, "document": "moon.md", "page": 2}])
    turns = store.recent_turns(cid, 5)
    assert [m["content"] for m in turns] == ["q1", "a1", "q3", "a3 [1]"]  # the unanswered question is skipped
    assert [m["content"] for m in store.recent_turns(cid, 1)] == ["q3", "a3 [1]"]
    assert store.recent_turns(cid, 0) == []

    store.add_feedback(a1, -1, "too short")
    store.add_feedback(a1, 1, "fine after all")  # replaces the earlier vote
    with pytest.raises(MessageNotFound):
        store.add_feedback("nope", 1)
    conv = store.get_conversation(cid)
    assert conv["title"] == "first question about the moon"
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant", "user", "user", "assistant"]
    assert conv["messages"][1]["feedback_score"] == 1 and conv["messages"][1]["usage"] == {"completion_tokens": 2}

    store.rename_conversation(cid, "Moon")
    md = store.export_markdown(cid)
    assert md.startswith("# Moon") and "## Assistant (kb)" in md and "1. moon.md · p. 2" in md and "👍" in md
    assert store.list_conversations()[0]["messages"] == 5
    store.delete_conversation(cid)
    assert store.list_conversations() == []
    with pytest.raises(ChatError):
        store.get_conversation(cid)
    store.close()


def test_pair_turns_takes_the_last_pairs() -> None:
    msgs = [{"role": r, "content": str(i)} for i, r in enumerate(["user", "assistant"] * 3)]
    assert [m["content"] for m in pair_turns(msgs, 2)] == ["2", "3", "4", "5"]


# tools -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "want"), [
    ("2 + 3 * 4", "14"), ("(2+3)*4", "20"), ("2^10", "1024"), ("7 / 2", "3.5"), ("7 // 2", "3"),
    ("sqrt(16) + abs(-2)", "6"), ("3 × 4 ÷ 2", "6"), ("round(pi, 3)", "3.142"), ("-2 ** 2", "-4"),
    ("10 % 3 =", "1"), ("factorial(5)", "120"),
])
def test_calculator(expr: str, want: str) -> None:
    assert calculate(expr) == want


@pytest.mark.parametrize("expr", [
    "__import__('os').system('id')", "open('/etc/passwd')", "(1).__class__", "[1, 2]", "x + 1",
    "9 ** 9 ** 9", "2 ** 100000", "10 ** 5000", "factorial(100000)", "1 / 0", "1" * 600, "(-8) ** 0.5",
    "lambda: 1", "'a' * 3",
])
def test_calculator_refuses(expr: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(ToolError):
        calculate(expr)
    assert time.perf_counter() - t0 < 1.0


def test_current_time() -> None:
    assert str(time.gmtime().tm_year) in current_time("UTC")
    with pytest.raises(ToolError):
        current_time("Mars/Olympus")


# SearXNG ---------------------------------------------------------------------------------------------


@pytest.fixture
def searxng() -> Iterator[str]:
    with searxng_stub([
            {"title": "Zhiku home", "url": "https://zhiku.example/home", "content": "Zhiku answers offline."},
            {"title": "No url"},
            {"title": "Docs", "url": "https://zhiku.example/docs", "content": "Install with pip."}]) as url:
        yield url


def test_searxng_results(searxng: str) -> None:
    results = asyncio.run(SearxngProvider(searxng, 5).search("zhiku", 5))
    assert [r.url for r in results] == ["https://zhiku.example/home", "https://zhiku.example/docs"]
    assert results[0].snippet == "Zhiku answers offline."


def test_searxng_unreachable_and_hanging() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(SearchError, match="unreachable"):
        asyncio.run(SearxngProvider(f"http://127.0.0.1:{closed}", 2).search("q"))
    # a server that accepts the connection and never answers: bounded by the timeout
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        t0 = time.perf_counter()
        with pytest.raises(SearchError, match="did not answer within 0.5 s"):
            asyncio.run(SearxngProvider(f"http://127.0.0.1:{listener.getsockname()[1]}", 0.5).search("q"))
        assert time.perf_counter() - t0 < 2.0
