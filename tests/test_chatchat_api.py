"""The Langchain-Chatchat 0.2 API on a live zhiku server (loopback, real smollm2-135m, real use-m3 embedder),
driven by a client written the way Chatchat's own `ApiRequest` (webui_pages/utils.py) is: httpx, `iter_text`,
`json.loads` on every piece. SearXNG is the loopback stand-in the chat tests use (no search engine is
reachable from here)."""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import docx_bytes, module_server, running, searxng_stub
from test_chat_e2e import BAKERY, LIGHTHOUSE, TIDES, harbour
from zhiku.server.app import create_app
from zhiku.server.chatchat.service import NO_HIT
from zhiku.services import Services

KB = "kb_for_api_test"
SMALL = {"max_tokens": 40, "temperature": 0.0}
CONTRACT = "采购合同约定：乙方应在收到订单后十五个工作日内交付全部设备，付款期限为验收合格后三十天。"


class ApiRequest:
    """The calls of Chatchat 0.2.7's ApiRequest that its web UI and scripts make, written the same way."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url
        self.headers = headers or {}
        self.content_type = ""

    def _url(self, path: str) -> str:
        return f"{self.base_url.strip(' /')}/{path.strip(' /')}"

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self._url(path), headers={**self.headers, **kw.pop("headers", {})}, timeout=120, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.post(self._url(path), headers={**self.headers, **kw.pop("headers", {})}, timeout=120, **kw)

    def stream(self, path: str, json_body: Any) -> Iterator[dict[str, Any]]:
        """Chatchat's _httpx_stream2generator(as_json=True): json.loads on every piece iter_text gives."""
        with httpx.stream("POST", self._url(path), json=json_body, headers=self.headers, timeout=120) as r:
            self.content_type = r.headers["content-type"]
            for chunk in r.iter_text(None):
                if chunk:
                    yield json.loads(chunk)

    # knowledge bases
    def list_knowledge_bases(self) -> list[str]:
        return list(self.get("/knowledge_base/list_knowledge_bases").json()["data"])

    def create_knowledge_base(self, name: str) -> dict[str, Any]:
        return dict(self.post("/knowledge_base/create_knowledge_base", json={
            "knowledge_base_name": name, "vector_store_type": "faiss", "embed_model": "bge-large-zh"}).json())

    def delete_knowledge_base(self, name: str) -> dict[str, Any]:
        return dict(self.post("/knowledge_base/delete_knowledge_base", json=f"{name}").json())

    def list_kb_docs(self, name: str) -> dict[str, Any]:
        return dict(self.get("/knowledge_base/list_files", params={"knowledge_base_name": name}).json())

    def search_kb_docs(self, name: str, query: str, **kw: Any) -> Any:
        return self.post("/knowledge_base/search_docs", json={"knowledge_base_name": name, "query": query,
                                                              **kw}).json()

    def upload_kb_docs(self, files: list[tuple[str, bytes]], name: str, override: bool = False,
                       docs: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        data = {"knowledge_base_name": name, "override": override, "to_vector_store": True,
                "docs": json.dumps(docs or {}, ensure_ascii=False), **kw}
        return dict(self.post("/knowledge_base/upload_docs", data=data,
                              files=[("files", (n, io.BytesIO(b))) for n, b in files]).json())

    def update_kb_docs(self, name: str, file_names: list[str], **kw: Any) -> dict[str, Any]:
        body = {"knowledge_base_name": name, "file_names": file_names, **kw}
        if "docs" in body:
            body["docs"] = json.dumps(body["docs"], ensure_ascii=False)
        return dict(self.post("/knowledge_base/update_docs", json=body).json())

    def recreate_vector_store(self, name: str, **kw: Any) -> list[dict[str, Any]]:
        return list(self.stream("/knowledge_base/recreate_vector_store", {"knowledge_base_name": name, **kw}))

    # chat
    def chat_chat(self, query: str, stream: bool = True, **kw: Any) -> list[dict[str, Any]]:
        return list(self.stream("/chat/chat", {"query": query, "history": [], "stream": stream, **SMALL, **kw}))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, smollm_path: Path) -> Iterator[dict[str, Any]]:
    # answer_check off: the KB answer streams chunk by chunk (on, it is held back until checked and sent
    # whole; tests/test_answer_check.py)
    with module_server(tmp_path_factory, smollm_path, harbour, search_timeout=2.0, answer_check=False) as srv:
        yield {"base": srv.base, "api": ApiRequest(srv.base), "services": srv.services, "settings": srv.settings}


def test_knowledge_base_routes(env: dict[str, Any]) -> None:
    api, services = env["api"], env["services"]
    blank = api.create_knowledge_base(" ")
    assert blank == {"code": 404, "msg": "知识库名称不能为空，请重新填写知识库名称", "data": None}
    assert api.create_knowledge_base(KB) == {"code": 200, "msg": f"已新增知识库 {KB}", "data": None}
    assert api.create_knowledge_base(KB)["msg"] == f"已存在同名知识库 {KB}"
    attack = api.create_knowledge_base("../evil")
    assert attack["code"] == 403 and "path separator" in attack["msg"]
    assert KB in api.list_knowledge_bases() and "harbour" in api.list_knowledge_bases()
    assert services.kb.get(KB).embedder == "use-m3"  # Chatchat's embedding model names are not zhiku's

    files = [("lighthouse.md", LIGHTHOUSE.encode()), ("bakery.txt", BAKERY.encode()),
             ("wiki/采购合同.docx", docx_bytes("采购合同", CONTRACT))]
    up = api.upload_kb_docs(files, KB, override=True)
    assert up == {"code": 200, "msg": "文件上传与向量化完成", "data": {"failed_files": {}}}
    again = api.upload_kb_docs(files, KB)
    assert again["code"] == 200 and again["data"]["failed_files"] == {n: f"文件 {n} 已存在。" for n, _ in files}
    custom = {"bakery.txt": [{"page_content": "custom docs: the Copperkettle bakery opens at seven.",
                              "metadata": {"kind": "hand-made"}}]}
    assert api.upload_kb_docs(files, KB, override=True, docs=custom)["data"]["failed_files"] == {}
    assert api.list_kb_docs(KB) == {"code": 200, "msg": "success", "data": ["bakery.txt", "lighthouse.md", "采购合同.docx"]}
    assert api.list_kb_docs("nope") == {"code": 404, "msg": "未找到知识库 nope", "data": []}

    hits = api.search_kb_docs(KB, "Who is the keeper of the Saltmarsh lighthouse?")
    assert isinstance(hits, list) and 1 <= len(hits) <= 3
    top = next(h for h in hits if "Oswin Fairweather" in h["page_content"])
    assert top["metadata"]["source"] == "lighthouse.md" and set(top) >= {"page_content", "metadata", "score"}
    assert top["score"] == pytest.approx(1 - top["relevance"], abs=1e-6) and 0 <= top["score"] <= 1
    assert [h["score"] for h in hits] == sorted(h["score"] for h in hits)  # distances: closest first
    strict = api.search_kb_docs(KB, "Who keeps the Saltmarsh lighthouse?", score_threshold=0.01)
    assert all(h["score"] <= 0.01 for h in strict)
    bakery = api.search_kb_docs(KB, "When does the bakery open?", top_k=1)[0]
    assert bakery["page_content"].startswith("custom docs") and bakery["metadata"]["kind"] == "hand-made"
    assert api.search_kb_docs(KB, "付款期限", top_k=1)[0]["metadata"]["source"] == "采购合同.docx"
    assert api.search_kb_docs("nope", "anything") == []

    info = api.post("/knowledge_base/update_info", json={"knowledge_base_name": KB, "kb_info": "港口资料"}).json()
    assert info == {"code": 200, "msg": "知识库介绍修改完成", "data": {"kb_info": "港口资料"}}
    assert services.kb.get(KB).description == "港口资料"

    upd = api.update_kb_docs(KB, ["lighthouse.md", "bakery.txt", "wiki/采购合同.docx", "ghost.md"],
                             chunk_size=120, chunk_overlap=20)
    assert upd == {"code": 200, "msg": "更新文档完成", "data": {"failed_files": {"ghost.md": "未找到文件 ghost.md"}}}
    doc = {d.path: d for d in services.kb.documents(KB)}
    assert [c["text"] for c in services.kb.chunks(KB, doc["bakery.txt"].id)] == [custom["bakery.txt"][0]["page_content"]]
    assert len(services.kb.chunks(KB, doc["lighthouse.md"].id)) > 1  # re-split at 120 characters
    api.update_kb_docs(KB, ["bakery.txt"], override_custom_docs=True)
    assert "rye bread" in services.kb.chunks(KB, services.kb.document_by_path(KB, "bakery.txt").id)[0]["text"]

    r = api.get("/knowledge_base/download_doc", params={"knowledge_base_name": KB, "file_name": "lighthouse.md"})
    assert r.status_code == 200 and r.content == LIGHTHOUSE.encode()
    assert r.headers["content-disposition"].startswith("attachment")
    r = api.get("/knowledge_base/download_doc", params={"knowledge_base_name": KB, "file_name": "lighthouse.md",
                                                        "preview": True})
    assert r.headers["content-disposition"].startswith("inline")
    for kb_name, file_name, code in ((KB, "../../zhiku.db", 500), (KB, "/etc/passwd", 500), ("../x", "a", 403),
                                     ("nope", "a.md", 404)):
        r = api.get("/knowledge_base/download_doc", params={"knowledge_base_name": kb_name, "file_name": file_name})
        assert r.json()["code"] == code and "root:" not in r.text

    progress = api.recreate_vector_store(KB, chunk_size=300, chunk_overlap=30)
    assert sorted(p["doc"] for p in progress) == ["bakery.txt", "lighthouse.md", "采购合同.docx"]
    assert all(p["code"] == 200 and p["total"] == 3 for p in progress)
    assert [p["finished"] for p in progress] == [1, 2, 3] and progress[0]["msg"] == f"(1 / 3): {progress[0]['doc']}"
    assert api.recreate_vector_store("nope", allow_empty_kb=False) == [{"code": 404, "msg": "未找到知识库 ‘nope’"}]
    assert api.search_kb_docs(KB, "Who keeps the Saltmarsh lighthouse?")[0]["metadata"]["source"] == "lighthouse.md"

    gone = api.post("/knowledge_base/delete_docs", json={"knowledge_base_name": KB,
                                                         "file_names": ["bakery.txt", "ghost.md"]}).json()
    assert gone == {"code": 200, "msg": "文件删除完成", "data": {"failed_files": {"ghost.md": "未找到文件 ghost.md"}}}
    assert api.list_kb_docs(KB)["data"] == ["lighthouse.md", "采购合同.docx"]
    assert api.delete_knowledge_base(KB) == {"code": 200, "msg": f"成功删除知识库 {KB}", "data": None}
    assert api.delete_knowledge_base(KB) == {"code": 404, "msg": f"未找到知识库 {KB}", "data": None}
    assert KB not in api.list_knowledge_bases()


def test_delete_docs_keeps_the_file_in_the_base_unless_delete_content(env: dict[str, Any]) -> None:
    """As in Chatchat: delete_docs takes a file out of the vector store and, unless delete_content, leaves it in
    the base's content, so recreate_vector_store adds it again (one progress object per file)."""
    api, name = env["api"], "kept_content"
    assert api.create_knowledge_base(name)["code"] == 200
    files = [("lighthouse.md", LIGHTHOUSE.encode()), ("bakery.txt", BAKERY.encode())]
    assert api.upload_kb_docs(files, name)["data"]["failed_files"] == {}

    def delete(**kw: Any) -> dict[str, Any]:
        return dict(api.post("/knowledge_base/delete_docs", json={"knowledge_base_name": name,
                                                                  "file_names": ["lighthouse.md"], **kw}).json())

    def download() -> httpx.Response:
        return api.get("/knowledge_base/download_doc", params={"knowledge_base_name": name,
                                                               "file_name": "lighthouse.md"})

    assert delete() == {"code": 200, "msg": "文件删除完成", "data": {"failed_files": {}}}
    assert api.list_kb_docs(name)["data"] == ["bakery.txt"]
    found = api.search_kb_docs(name, "Who keeps the Saltmarsh lighthouse?", top_k=5, score_threshold=1)
    assert found and {h["metadata"]["source"] for h in found} == {"bakery.txt"}
    assert download().content == LIGHTHOUSE.encode()  # still in the base's content
    progress = api.recreate_vector_store(name)
    assert sorted(p["doc"] for p in progress) == ["bakery.txt", "lighthouse.md"]
    assert all(p["code"] == 200 and p["total"] == 2 for p in progress)
    assert api.list_kb_docs(name)["data"] == ["bakery.txt", "lighthouse.md"]
    assert api.search_kb_docs(name, "Who keeps the Saltmarsh lighthouse?")[0]["metadata"]["source"] == "lighthouse.md"

    assert delete(delete_content=True)["data"]["failed_files"] == {}
    assert download().json()["code"] == 500
    assert [p["doc"] for p in api.recreate_vector_store(name)] == ["bakery.txt"]
    assert api.list_kb_docs(name)["data"] == ["bakery.txt"]


def test_bad_bodies_get_chatchat_envelopes(env: dict[str, Any]) -> None:
    api = env["api"]
    r = api.post("/knowledge_base/search_docs", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == 400 and "not valid JSON" in r.json()["msg"]
    r = api.post("/knowledge_base/search_docs", json={"query": "x"})
    assert r.json()["code"] == 400 and "knowledge_base_name" in r.json()["msg"]
    r = api.post("/chat/chat", json={"query": "hi", "temperature": 5})
    assert r.json()["code"] == 400 and "temperature" in r.json()["msg"]
    for history in ([{"role": "robot", "content": "x"}], [[[], "x"]], ["user"], [{"role": "user"}]):
        r = api.post("/chat/chat", json={"query": "hi", "history": history})
        assert r.status_code == 400 and r.json()["code"] == 400 and "history" in r.json()["msg"], history
    bad_docs = api.post("/knowledge_base/upload_docs", data={"knowledge_base_name": "harbour", "docs": "[oops"},
                        files=[("files", ("a.txt", b"text"))]).json()
    assert bad_docs["code"] == 400 and "docs must be" in bad_docs["msg"]
    r = api.post("/knowledge_base/upload_docs", data={"knowledge_base_name": "harbour", "chunk_size": "10"},
                 files=[("files", ("a.txt", b"text"))])
    assert r.json()["code"] == 400 and "chunk_size" in r.json()["msg"]


def read_chunked(base: str, path: str, body: dict[str, Any], recv: int = 16) -> list[bytes]:
    """POST over a raw socket and return the HTTP chunks of a chunked reply, read `recv` bytes at a time with
    pauses (so that several writes pile up in the socket between reads)."""
    host, port = urlsplit(base).hostname, urlsplit(base).port
    payload = json.dumps(body).encode()
    with socket.create_connection((host, port), timeout=120) as s:
        s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(payload)).encode() + b"\r\nConnection: close\r\n\r\n" + payload)
        raw = b""
        while part := s.recv(recv):
            raw += part
            if len(raw) % 512 < recv:
                time.sleep(0.01)
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower(), head
    chunks = []
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return chunks
        chunks.append(rest[:size])
        rest = rest[size + 2:]


def test_knowledge_base_chat(env: dict[str, Any]) -> None:
    api, base = env["api"], env["base"]
    body = {"query": "Who is the keeper of the Saltmarsh lighthouse?", "knowledge_base_name": "harbour",
            "top_k": 2, "score_threshold": 1, "history": [], "stream": True, "prompt_name": "default", **SMALL}
    objects = list(api.stream("/chat/knowledge_base_chat", body))
    assert all(set(o) == {"answer"} for o in objects[:-1]) and len(objects) > 2
    assert api.content_type.startswith("text/event-stream")
    docs = objects[-1]["docs"]
    assert set(objects[-1]) == {"docs"} and "".join(o["answer"] for o in objects[:-1]).strip()
    link = f"{base}/knowledge_base/download_doc?knowledge_base_name=harbour&file_name=lighthouse.md"
    assert docs[0].startswith(f"出处 [1] [lighthouse.md]({link}) \n\n") and "Oswin Fairweather" in docs[0]
    hit = env["services"].kb.search("harbour", body["query"], top_k=2)[0]
    assert docs[0] == f"出处 [1] [lighthouse.md]({link}) \n\n{hit.text}\n\n"  # the whole passage, as the hit had it
    assert httpx.get(link).content == LIGHTHOUSE.encode()  # the link works
    one = list(api.stream("/chat/knowledge_base_chat", {**body, "stream": False}))
    assert len(one) == 1 and set(one[0]) == {"answer", "docs"} and one[0]["docs"][0].startswith("出处 [1]")
    # Every HTTP chunk is one whole JSON object, however the bytes arrive.
    chunks = read_chunked(base, "/chat/knowledge_base_chat", body)
    assert len(chunks) > 2 and all(isinstance(json.loads(c), dict) for c in chunks)
    # No hit: Chatchat's red notice, and the LLM answers from its own knowledge.
    none = list(api.stream("/chat/knowledge_base_chat", {**body, "knowledge_base_name": "empty", "stream": False}))
    assert none[0]["docs"] == [NO_HIT] and none[0]["answer"].strip()
    assert none[0]["answer"] != env["settings"].no_answer_reply  # the model answered, not zhiku's fixed reply
    assert list(api.stream("/chat/knowledge_base_chat", {**body, "knowledge_base_name": "nope"})) == [
        {"code": 404, "msg": "未找到知识库 nope", "data": None}]


def test_chat_history_and_feedback(env: dict[str, Any]) -> None:
    api, services = env["api"], env["services"]
    pieces = api.chat_chat("Say hello to Ada.", history=[["user", "Hi"], {"role": "assistant", "content": "Hello!"}])
    assert len(pieces) > 1 and all(set(p) == {"text", "chat_history_id"} for p in pieces)
    cid = pieces[0]["chat_history_id"]
    assert {p["chat_history_id"] for p in pieces} == {cid} and len(cid) == 32
    whole = api.chat_chat("Name a colour.", stream=False)
    assert len(whole) == 1 and whole[0]["text"].strip() and whole[0]["chat_history_id"] != cid
    fb = api.post("/chat/feedback", json={"chat_history_id": cid, "score": 100, "reason": "清楚"}).json()
    assert fb == {"code": 200, "msg": f"已反馈聊天记录 {cid}", "data": None}
    answer = services.chat.get_conversation(cid)["messages"][-1]
    assert answer["role"] == "assistant" and answer["content"] == "".join(p["text"] for p in pieces)
    assert answer["feedback_score"] == 1 and answer["feedback_reason"] == "清楚"
    api.post("/chat/feedback", json={"chat_history_id": cid, "score": 0})
    assert services.chat.get_conversation(cid)["messages"][-1]["feedback_score"] == -1
    assert api.post("/chat/feedback", json={"chat_history_id": "0" * 32, "score": 80}).json()["code"] == 500
    raw = api.post("/chat/fastchat", json={"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 20,
                                           "temperature": 0, "stream": True})
    assert raw.status_code == 200 and raw.text.strip() and not raw.text.startswith("{")


def test_search_engine_chat(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    api = env["api"]
    with searxng_stub(TIDES) as url:
        monkeypatch.setattr(env["settings"], "searxng_url", url)
        body = {"query": "When is high tide at Saltmarsh?", "search_engine_name": "searxng", "top_k": 3,
                "stream": True, **SMALL}
        objects = list(api.stream("/chat/search_engine_chat", body))
        docs = objects[-1]["docs"]
        assert all(set(o) == {"answer"} for o in objects[:-1])
        assert docs[0].startswith("出处 [1] [https://tides.example/saltmarsh](https://tides.example/saltmarsh)")
        assert "06:40" in docs[0] and len(docs) == 2
        one = list(api.stream("/chat/search_engine_chat", {**body, "stream": False}))
        assert set(one[0]) == {"answer", "docs"}
    with socket.socket() as s:  # a port nobody listens on: the engine is unreachable
        s.bind(("127.0.0.1", 0))
        monkeypatch.setattr(env["settings"], "searxng_url", f"http://127.0.0.1:{s.getsockname()[1]}")
    down = list(api.stream("/chat/search_engine_chat", {**body, "stream": False}))
    assert down[-1]["code"] != 200 and "unreachable" in down[-1]["msg"]
    # Chatchat knows bing but needs its key, which zhiku never has; an engine Chatchat does not know is refused.
    assert list(api.stream("/chat/search_engine_chat", {**body, "search_engine_name": "bing"})) == [
        {"code": 404, "msg": "要使用Bing搜索引擎，需要设置 `BING_SUBSCRIPTION_KEY`", "data": None}]
    assert list(api.stream("/chat/search_engine_chat", {**body, "search_engine_name": "baidu"})) == [
        {"code": 404, "msg": "未支持搜索引擎 baidu", "data": None}]


def test_agent_chat(env: dict[str, Any]) -> None:
    api = env["api"]
    body = {"query": "What is 23 * 19? Use the calculator.", "history": [], "stream": True, "max_tokens": 96,
            "temperature": 0.0}
    objects = list(api.stream("/chat/agent_chat", body))
    tools = [o["tools"] for o in objects if "tools" in o]
    assert tools and tools[0][:2] == ["工具名称: calculator", "工具状态: 调用成功"] and tools[0][3] == "工具输出: 437"
    assert "".join(o.get("final_answer", "") for o in objects).strip()
    assert all(set(o) <= {"answer", "tools", "final_answer"} for o in objects)
    one = list(api.stream("/chat/agent_chat", {**body, "stream": False}))
    assert len(one) == 1 and set(one[0]) == {"answer", "final_answer"} and "calculator" in one[0]["answer"]


def test_models_server_and_other(env: dict[str, Any]) -> None:
    api, model = env["api"], "smollm2-135m"
    running_models = api.post("/llm_model/list_running_models", json={}).json()
    assert running_models["code"] == 200 and list(running_models["data"]) == [model]
    config = api.post("/llm_model/list_config_models", json={}).json()["data"]
    assert config["worker"] == [model] and config["online"] == {} and model in config["local"]
    assert api.post("/llm_model/get_model_config", json={"model_name": model}).json()["data"]["model_name"] == model
    same = api.post("/llm_model/change", json={"model_name": model, "new_model_name": model}).json()
    assert same["code"] == 200
    other = api.post("/llm_model/change", json={"model_name": model, "new_model_name": "qwen2.5-coder-0.5b"}).json()
    assert other["code"] == 500 and "cannot switch" in other["msg"] and "--model qwen2.5-coder-0.5b" in other["msg"]
    assert api.post("/llm_model/stop", json={"model_name": model}).json()["code"] == 500
    configs = api.post("/server/configs").json()
    assert configs["CHUNK_SIZE"] == 500 and configs["SCORE_THRESHOLD"] == 1.0 and configs["LLM_MODELS"] == [model]
    assert "{{ question }}" in configs["PROMPT_TEMPLATES"]["llm_chat"]["default"]
    assert api.post("/server/list_search_engines").json()["data"] == ["searxng", "duckduckgo"]
    kb_template = api.post("/server/get_prompt_template", json={"type": "knowledge_base_chat", "name": "default"})
    assert "{{ context }}" in kb_template.json()
    vectors = api.post("/other/embed_texts", json={"texts": ["你好", "hello"], "to_query": True}).json()
    assert vectors["code"] == 200 and len(vectors["data"]) == 2 and len(vectors["data"][0]) == 512
    done = api.post("/other/completion", json={"query": "The capital of France is", "max_tokens": 8,
                                               "temperature": 0, "echo": True})
    assert done.status_code == 200 and done.text.startswith("The capital of France is") and len(done.text) > 24


def test_same_protections_as_the_rest(env: dict[str, Any]) -> None:
    """API keys and upload limits hold on the Chatchat routes as on /api (a server of its own: other settings),
    and every refusal on a Chatchat path comes in Chatchat's envelope, which its clients compare."""
    settings = env["settings"].model_copy(update={"api_key": "sekrit", "max_upload_mb": 0.01,
                                                  "max_request_upload_mb": 0.05, "max_body_mb": 0.01})
    with running(create_app(settings, Services(settings), ui=False, preload=False)) as base:
        missing = ApiRequest(base).get("/knowledge_base/list_knowledge_bases")
        assert missing.status_code == 401
        assert missing.json() == {"code": 401, "msg": missing.json()["msg"], "data": None}
        assert "Authorization: Bearer" in missing.json()["msg"]
        wrong = ApiRequest(base, {"Authorization": "Bearer nope"}).post("/chat/chat", json={"query": "hi"})
        assert wrong.status_code == 401 and wrong.json() == {"code": 401, "msg": "Incorrect API key provided.",
                                                             "data": None}
        assert ApiRequest(base).get("/knowledge_base/download_doc", params={
            "knowledge_base_name": "harbour", "file_name": "lighthouse.md"}).json()["code"] == 401
        # /v1 and /api keep OpenAI's shape on the same server.
        for path in ("/v1/models", "/api/kb"):
            assert httpx.get(base + path).json()["error"]["code"] == "missing_api_key", path
        api = ApiRequest(base, {"Authorization": "Bearer sekrit"})
        assert "harbour" in api.list_knowledge_bases()
        big = api.post("/knowledge_base/upload_docs", data={"knowledge_base_name": "harbour"},
                       files=[("files", ("big.txt", b"x" * 20_000))])
        assert big.status_code == 413 and big.json()["code"] == 413 and set(big.json()) == {"code", "msg", "data"}
        assert "max_upload_mb" in big.json()["msg"]
        assert "big.txt" not in api.list_kb_docs("harbour")["data"]
        whole = api.post("/knowledge_base/upload_docs", data={"knowledge_base_name": "harbour"},
                         files=[("files", (f"f{i}.txt", b"y" * 9_000)) for i in range(8)])
        assert whole.status_code == 413 and whole.json()["code"] == 413 and "max_request_upload_mb" in whole.json()["msg"]
        body = api.post("/chat/chat", json={"query": "x" * 20_000})
        assert body.status_code == 413 and body.json()["code"] == 413 and "max_body_mb" in body.json()["msg"]
        lone = api.post("/knowledge_base/search_docs", content=b'{"query": "\\ud800", "knowledge_base_name": "harbour"}',
                        headers={"Content-Type": "application/json"})
        assert lone.status_code == 400 and lone.json()["code"] == 400 and "surrogate" in lone.json()["msg"]
        nowhere = api.post("/knowledge_base/no_such_route", json={})
        assert nowhere.status_code == 404 and nowhere.json() == {"code": 404, "data": None,
                                                                 "msg": "no route POST /knowledge_base/no_such_route"}
        assert httpx.post(base + "/v1/no_such_route", headers=api.headers).json()["error"]["message"].startswith(
            "no route")


def test_custom_docs_meet_the_limits_of_files(env: dict[str, Any]) -> None:
    """Chatchat's hand-made `docs` are held to what a file is: the per-document chunk cap (a per-file failure,
    as for a parsed file) and the per-file size, counted in UTF-8 bytes (a 413 for the request, as for a file)."""
    settings = env["settings"].model_copy(update={"max_chunks_per_document": 3, "max_upload_mb": 0.01})
    services = Services(settings)
    services.kb.create("capped")
    with running(create_app(settings, services, ui=False, preload=False)) as base:
        api = ApiRequest(base)
        four = [{"page_content": f"第{i}段：渡轮中午开出。", "metadata": {}} for i in range(4)]
        r = api.upload_kb_docs([("four.txt", b"ferry"), ("three.txt", b"tide")], "capped",
                               docs={"four.txt": four, "three.txt": four[:3]})
        assert r["code"] == 200 and list(r["data"]["failed_files"]) == ["four.txt"]
        reason = r["data"]["failed_files"]["four.txt"]
        assert "4 chunks, over the limit of 3 per document" in reason and "max_chunks_per_document" in reason
        assert api.list_kb_docs("capped")["data"] == ["three.txt"]
        assert len(services.kb.chunks("capped", services.kb.document_by_path("capped", "three.txt").id)) == 3
        # update_docs with hand-made chunks: the same cap, the stored chunks untouched.
        r = api.update_kb_docs("capped", [], docs={"three.txt": four})
        assert "max_chunks_per_document" in r["data"]["failed_files"]["three.txt"]
        # 4,000 Chinese characters are 12,000 bytes: over 0.01 MB though under 10,000 characters.
        big = api.post("/knowledge_base/upload_docs", data={
            "knowledge_base_name": "capped", "docs": json.dumps({"big.txt": [{"page_content": "潮" * 4000}]})},
            files=[("files", ("big.txt", io.BytesIO(b"small file")))])
        assert big.status_code == 413 and big.json()["code"] == 413
        assert "'big.txt' is larger than" in big.json()["msg"] and "max_upload_mb" in big.json()["msg"]
        meta = api.post("/knowledge_base/upload_docs", data={"knowledge_base_name": "capped", "docs": json.dumps(
            {"meta.txt": [{"page_content": "潮", "metadata": {"note": "汐" * 4000}}]})},  # the metadata is stored too
            files=[("files", ("meta.txt", io.BytesIO(b"small file")))])
        assert meta.status_code == 413 and "'meta.txt' is larger than" in meta.json()["msg"]
        big = api.post("/knowledge_base/update_docs", json={
            "knowledge_base_name": "capped", "file_names": [], "docs": {"three.txt": [{"page_content": "潮" * 4000}]}})
        assert big.status_code == 413 and big.json()["code"] == 413
        assert api.list_kb_docs("capped")["data"] == ["three.txt"]
