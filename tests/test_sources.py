"""Sources as one typed value: built from real search hits and results, read back from their JSON (also
the untyped JSON stored before `kind` existed), rendered the same way by the export and the CLI, and linked
only by the interface that serves the file."""

from __future__ import annotations

from pathlib import Path

from zhiku.chat.history import HistoryStore
from zhiku.chat.sources import KBSource, Source, WebSource, sources_from
from zhiku.kb.types import Hit
from zhiku.search_engines import SearchResult
from zhiku.server.links import download_url, with_links

HIT = Hit(chunk_id=11, document_id=7, document="手册.pdf", text="  Sick days:\n three per year. " * 30,
          score=0.812345, page=3, heading=["Leave", "Sick days"])


def test_kb_source_from_a_hit_round_trips_through_json() -> None:
    s = KBSource.from_hit(1, HIT, "员工")
    d = s.to_dict()
    assert d["kind"] == "kb" and "url" not in d  # the chat layer knows no HTTP route
    assert d["score"] == 0.8123 and len(d["snippet"]) == 300 and "\n" not in d["snippet"]
    assert Source.from_dict(d) == s
    assert s.label() == "手册.pdf · p. 3 · Leave > Sick days"


def test_web_source_round_trips_and_labels() -> None:
    s = WebSource.from_result(2, SearchResult("Tides", "https://tides.example/x", "High tide\nat 06:40"), "searxng")
    d = s.to_dict()
    assert d == {"kind": "web", "index": 2, "snippet": "High tide at 06:40", "url": "https://tides.example/x",
                 "title": "Tides", "engine": "searxng", "role": None, "support": None}  # not judged yet
    assert Source.from_dict(d) == s and s.label() == "Tides"
    assert WebSource(index=1, url="https://a.example").label() == "https://a.example"


def test_untyped_stored_sources_are_told_apart_once() -> None:
    old = sources_from([{"index": 1, "document": "a.md", "url": "/api/kb/x/documents/1/download", "kb": "x",
                         "document_id": 1, "heading": "One"},
                        {"index": 2, "title": "T", "url": "https://t.example"}, "not a source"])
    assert isinstance(old[0], KBSource) and old[0].heading == ["One"]
    assert isinstance(old[1], WebSource) and len(old) == 2


def test_the_api_adds_download_links_for_knowledge_base_sources_only() -> None:
    kb = KBSource.from_hit(1, HIT, "员工 a/b").to_dict()
    web = WebSource(index=2, url="https://t.example").to_dict()
    linked = with_links([kb, web])
    assert linked[0]["url"] == download_url("员工 a/b", 7) == "/api/kb/%E5%91%98%E5%B7%A5%20a%2Fb/documents/7/download"
    assert linked[1] == web and "url" not in kb  # the input is not changed


def test_export_renders_both_kinds(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "z.db")
    try:
        cid = store.ensure_conversation(None, "kb", "q")
        store.add_message(cid, "assistant", "answer [1][2]", "kb",
                          sources=[KBSource.from_hit(1, HIT, "hr").to_dict(),
                                   WebSource(index=2, title="Tides", url="https://t.example").to_dict()])
        md = store.export_markdown(cid)
    finally:
        store.close()
    assert "1. 手册.pdf · p. 3 · Leave > Sick days" in md and "2. [Tides](https://t.example)" in md
