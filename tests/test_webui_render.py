"""The UI's pure parts: language choice, translations, sources, stored conversations as chat rows."""

from __future__ import annotations

from pathlib import Path

from zhiku.chat.sources import sources_from
from zhiku.chat.types import ChatEvent
from zhiku.config import Settings
from zhiku.kb.types import DocInfo, Hit
from zhiku.limits import size_text
from zhiku.server.app import create_app, server_prefixes
from zhiku.server.paths import under
from zhiku.webui import render
from zhiku.webui.chat_page import _trace, answer_content, download_link, history_from
from zhiku.webui.i18n import PREFIX, STATIC_KEYS, STRINGS, pick, t, translations


def test_language_follows_the_first_browser_preference_unless_fixed() -> None:
    assert pick("zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert pick("zh-TW") == "zh"
    assert pick("en-US,zh-CN;q=0.5") == "en"  # the browser's first choice, as navigator.language
    assert pick("fr-FR,zh;q=0.8") == "en"  # same fallback as Gradio's frontend
    assert pick(None) == "en"
    assert pick("en-US", setting="zh") == "zh"
    assert pick("zh-CN", setting="en") == "en"


def test_every_string_has_both_languages_and_fixed_language_covers_every_locale() -> None:
    for key, (zh, en) in STRINGS.items():
        assert zh and (en or key == "auth_message"), key
    auto = translations()
    assert auto["zh-CN"][PREFIX + "send"] == "发送" and auto["en"][PREFIX + "send"] == "Send"
    fixed = translations("zh")
    assert {d[PREFIX + "send"] for d in fixed.values()} == {"发送"}
    assert len(auto["en"]) == len(STATIC_KEYS)


def test_sources_are_numbered_linked_and_escaped() -> None:
    # stored before sources had a `kind`: told apart by their fields, once, in Source.from_dict
    sources = sources_from([
        {"index": 1, "kb": "docs", "document": "a*b.pdf", "document_id": 7, "page": 3, "heading": ["Intro"],
         "score": 0.8123, "snippet": "see <script>alert(1)</script> [link](http://x)"},
        {"index": 2, "title": "Result", "url": "https://example.org/x", "snippet": "web"},
    ])
    md = render.sources_markdown(sources, "en", download_link)
    lines = md.splitlines()
    assert lines[2].startswith("1. **a\\*b.pdf** · page 3 · Intro · score 0.81 · [download](/ui/files/docs/7)")
    assert "<script>" not in md and "\\[link\\]" in md
    assert "2. [Result](https://example.org/x)" in md
    assert "第 3 页" in render.sources_markdown(sources, "zh", download_link)
    assert answer_content("Hi", [], "en") == "Hi"


def test_searched_sources_are_not_shown_as_support() -> None:
    sources = sources_from([
        {"index": 2, "kb": "docs", "document": "b.md", "role": "attributed", "snippet": "holds the answer"},
        {"index": 1, "kb": "docs", "document": "a.md", "role": "searched", "snippet": "only retrieved"},
    ])
    md = render.sources_markdown(sources, "en")
    assert md.index("Sources") < md.index("2. **b.md**") < md.index("Searched, not used") < md.index("1. **a.md**")
    # under a refusal every source is only searched: no "Sources" (support) title at all
    refused = render.sources_markdown(sources_from([{"index": 1, "kb": "docs", "document": "a.md",
                                                     "role": "searched"}]), "zh")
    assert "检索到、未用于回答" in refused and "参考来源" not in refused


def test_stored_conversation_becomes_chat_rows_with_ids_and_agent_trace() -> None:
    conv = {"messages": [
        {"id": "q1", "role": "user", "content": "12*7?"},
        {"id": "a1", "role": "assistant", "content": "84 [1]", "sources": [{"index": 1, "document": "d.md"}],
         "tool_calls": [{"id": "c1", "name": "calculator", "arguments": {"expression": "12*7"}, "result": "84"}]},
    ]}
    rows, ids = history_from(conv, "en")
    assert [r["role"] for r in rows] == ["user", "assistant", "assistant"]
    assert rows[1]["metadata"]["title"] == "🛠 Tool calculator" and rows[1]["metadata"]["status"] == "done"
    assert "84" in rows[1]["content"] and "d.md" in rows[2]["content"]
    assert ids == [None, None, "a1"]  # only the answer row can take feedback


def test_live_trace_inserts_a_pending_step_above_the_answer_and_fills_it_in() -> None:
    history = [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]
    ids: list[str | None] = [None, None]
    calls: dict = {}
    _trace(ChatEvent("tool_call", {"id": "c1", "name": "search_kb", "arguments": {"q": "x"}}), calls, history, ids,
           "zh")
    assert history[1]["metadata"]["status"] == "pending" and len(ids) == 3
    _trace(ChatEvent("tool_result", {"id": "c1", "result": "found", "ok": True}), calls, history, ids, "zh")
    assert history[1]["metadata"]["status"] == "done" and "found" in history[1]["content"]
    assert history[2] == {"role": "assistant", "content": ""}


def test_tables_and_status_in_both_languages() -> None:
    doc = DocInfo(1, "kb", "sub/a.PDF", "x", "pdf", "failed", "corrupt", 0, 10, 0.0)
    headers, rows = render.documents_table([doc], "zh")
    assert headers[1] == "文件" and rows[0][2] == "pdf" and rows[0][4] == "失败: corrupt"
    hits = [Hit(1, 1, "a.md", "text " * 100, 0.5, page=2)]
    assert "a.md" in render.hits_markdown(hits, "en") and render.hits_markdown([], "en") == t("en", "no_hits")
    assert [size_text(n) for n in (10, 36_822, 5 * 2**20, 3 * 2**30, 1536 * 2**10)] == ["10 B", "36 KB", "5 MB",
                                                                                        "3 GB", "1.5 MB"]


def test_server_paths_are_kept_from_gradio(tmp_path: Path) -> None:
    prefixes = server_prefixes(create_app(Settings(home=tmp_path, ui=False), preload=False))
    # read from the routes, not a list kept by hand
    assert {"/v1", "/api", "/health", "/metrics", "/docs", "/openapi.json", "/knowledge_base"} <= set(prefixes)
    for path in ("/v1", "/v1/models", "/API/kb", "//api/x", "/health", "/metrics", "/docs", "/chat/chat"):
        assert under(path, prefixes), path
    for path in ("/", "/gradio_api/queue/join", "/config", "/assets/x.js", "/apix", "/v10"):
        assert not under(path, prefixes), path
