"""The Chatchat 0.2 routes tried as a hostile user would (issue 16's ways, on issue 14's routes): JSON nested past
the parser's depth, bytes that are not UTF-8, one name twice in a request, chunk settings that cannot be, a
non-positive max_tokens. Each is a clear answer in Chatchat's envelope, never a 500 or a misleading report.
A live server on loopback (real smollm2-135m, real use-m3), httpx as Chatchat's ApiRequest uses it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from conftest import module_server
from zhiku.services import Services


def _stock(services: Services) -> None:
    services.kb.create("h")
    services.kb.add_uploads("h", [("a.txt", b"The ferry leaves at noon."), ("b.txt", b"The bakery opens at six.")])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, smollm_path: Path) -> Iterator[SimpleNamespace]:
    with module_server(tmp_path_factory, smollm_path, _stock) as s:
        yield s


def post(server: SimpleNamespace, path: str, **kw: object) -> httpx.Response:
    return httpx.post(server.base + path, timeout=120, **kw)  # type: ignore[arg-type]


def test_json_nested_too_deeply_is_a_400_on_every_route(server: SimpleNamespace) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    for path in ("/knowledge_base/search_docs", "/chat/chat", "/api/kb/h/search", "/v1/chat/completions"):
        r = post(server, path, content=deep, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "nests JSON" in r.text, (path, r.text)
    assert post(server, "/knowledge_base/search_docs", content=deep,
                headers={"Content-Type": "application/json"}).json()["code"] == 400
    docs = '{"a.txt": [{"page_content": "x", "metadata": ' + '{"a":' * 50_000 + "1" + "}" * 50_000 + "}]}"
    r = post(server, "/knowledge_base/upload_docs", data={"knowledge_base_name": "h", "docs": docs},
             files=[("files", ("c.txt", b"hello"))])
    assert r.status_code == 400 and r.json() == {"code": 400, "data": None,
                                                 "msg": "docs must be a JSON object {file name: [{page_content, "
                                                        "metadata}]}: nested too deeply"}


def test_a_body_that_is_not_utf8_is_told_so(server: SimpleNamespace) -> None:
    r = post(server, "/knowledge_base/search_docs", content=b'{"query": "\xff\xfe", "knowledge_base_name": "h"}',
             headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == 400
    assert r.json()["msg"] == "the request body is not valid UTF-8 (byte 0xff at offset 11): send JSON text in UTF-8"
    r = post(server, "/v1/embeddings", content=b'{"input": "\xc3"}', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_unicode"


def test_a_name_twice_in_delete_docs_is_deleted_once_and_not_reported_missing(server: SimpleNamespace) -> None:
    post(server, "/knowledge_base/upload_docs", data={"knowledge_base_name": "h"},
         files=[("files", ("twice.txt", b"Delete me once."))])
    r = post(server, "/knowledge_base/delete_docs", json={"knowledge_base_name": "h",
                                                          "file_names": ["twice.txt", "twice.txt"]})
    assert r.json() == {"code": 200, "msg": "文件删除完成", "data": {"failed_files": {}}}
    files = httpx.get(server.base + "/knowledge_base/list_files", params={"knowledge_base_name": "h"}).json()
    assert "twice.txt" not in files["data"]


def test_chunk_overlap_not_below_size_is_one_400(server: SimpleNamespace) -> None:
    bad = {"knowledge_base_name": "h", "chunk_size": 100, "chunk_overlap": 200}
    with httpx.stream("POST", server.base + "/knowledge_base/recreate_vector_store", json=bad, timeout=120) as r:
        objects = [json.loads(piece) for piece in r.iter_text(None) if piece]
    assert r.status_code == 400 and len(objects) == 1 and objects[0]["code"] == 400, objects
    assert "chunk_overlap (200) must be below chunk_size (100)" in objects[0]["msg"]
    r = post(server, "/knowledge_base/update_docs", json={**bad, "file_names": ["a.txt"]})
    assert r.status_code == 400 and "must be below chunk_size" in r.json()["msg"]
    services: Services = server.services
    assert {d.path: d.status for d in services.kb.documents("h")}["a.txt"] == "ok"


def test_a_non_positive_max_tokens_means_the_default_on_other_completion(server: SimpleNamespace) -> None:
    """As /chat/chat does (Chatchat's rule): max_tokens <= 0 is "not given", not a budget of -1 tokens."""
    for budget in (0, -1):
        r = post(server, "/other/completion", json={"query": "The capital of France is", "max_tokens": budget,
                                                    "temperature": 0})
        assert r.status_code == 200 and len(r.text.split()) >= 3, (budget, r.text)


def test_custom_docs_metadata_cannot_break_search(server: SimpleNamespace) -> None:
    """zhiku's own metadata keys given with other types (Chatchat clients send what they like) are dropped, the
    rest kept: one chunk with "heading": 5 made every search of its base a 500."""
    docs = {"p.txt": [{"page_content": "The lock keeper logs every barge.",
                       "metadata": {"page": "two", "heading": 5, "start": -3, "source": "/etc/passwd", "x": [1]}},
                      {"page_content": "Barges pay the lock toll in coins.",
                       "metadata": {"page": 4, "heading": "Tolls"}}]}
    r = post(server, "/knowledge_base/upload_docs", data={"knowledge_base_name": "h", "docs": json.dumps(docs)},
             files=[("files", ("p.txt", b"placeholder"))])
    assert r.json()["data"]["failed_files"] == {}, r.text
    hits = post(server, "/knowledge_base/search_docs", json={"knowledge_base_name": "h", "query": "barge lock",
                                                             "top_k": 5, "score_threshold": 1}).json()
    by_text = {h["page_content"]: h["metadata"] for h in hits if h["metadata"]["source"] == "p.txt"}
    assert by_text["The lock keeper logs every barge."] == {"x": [1], "source": "p.txt"}
    assert by_text["Barges pay the lock toll in coins."] == {"page": 4, "heading": ["Tolls"], "source": "p.txt"}
    api_hits = post(server, "/api/kb/h/search", json={"query": "barge lock toll", "top_k": 5}).json()
    assert {h["page"] for h in api_hits if h["document"] == "p.txt"} == {None, 4}
    answer = post(server, "/chat/knowledge_base_chat", json={"knowledge_base_name": "h", "query": "Who logs barges?",
                                                            "stream": False, "max_tokens": 8, "score_threshold": 1})
    assert answer.status_code == 200 and "docs" in answer.json(), answer.text


def test_a_name_long_in_bytes_is_refused_before_anything_is_created(server: SimpleNamespace) -> None:
    """64 characters of CJK Extension B are 256 bytes: too long for a folder name (the row was created, then the
    folder's mkdir failed with a 500)."""
    name = "\U00020000" * 64
    r = post(server, "/knowledge_base/create_knowledge_base", json={"knowledge_base_name": name})
    assert r.status_code == 200 and r.json()["code"] == 403, r.text
    assert "256 bytes long in UTF-8" in r.json()["msg"]
    assert post(server, "/api/kb", json={"name": name}).status_code == 400
    assert name not in httpx.get(server.base + "/knowledge_base/list_knowledge_bases").json()["data"]
    ok = "\U00020000" * 50  # 200 bytes
    assert post(server, "/knowledge_base/create_knowledge_base", json={"knowledge_base_name": ok}).json()["code"] == 200
