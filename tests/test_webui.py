"""The web UI in a real headless Chromium against a real server: the real smollm2 model, the use-m3
embedder, real files. Screenshots of every page go to test-artifacts/ (look at them)."""

from __future__ import annotations

import fcntl
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from docx import Document
from playwright.sync_api import Page, expect, sync_playwright

from conftest import REPO, running
from zhiku.config import Settings
from zhiku.server.app import create_app

expect.set_options(timeout=15_000)  # the box is shared with other test runs; answers stream in seconds

ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
QUESTION = "When was the Quexlan bridge completed?"


def ui_settings(home: Path, model: Path, **extra: Any) -> Settings:
    # Short answers keep the browser tests fast; one thread per slot because llama.cpp's busy-waiting
    # thread pool collapses on a loaded 2-core box.
    base: dict[str, Any] = dict(home=home, model=str(model), ctx=2048, parallel=2, threads=1, ui=True,
                                embedder="use-m3", default_max_tokens=40, temperature=0.0)
    return Settings(**{**base, **extra})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, smollm_path: Path) -> Iterator[tuple[str, Any]]:
    home = tmp_path_factory.mktemp("webui-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZHIKU_HOME", str(home))  # no zhiku.toml from the real home
        # KB answers stream token by token with the answer check off; on (the default) a checked answer is
        # held back and sent whole (tests/test_answer_check.py)
        app = create_app(ui_settings(home, smollm_path, answer_check=False))
        with running(app) as base:
            yield base, app.state.services


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is missing: run scripts/setup-system.sh (make setup-test does)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A Word file written by python-docx, a Markdown note and a corrupt PDF."""
    folder = tmp_path_factory.mktemp("webui-files")
    doc = Document()
    doc.add_heading("Quexlan Bridge Handbook", 1)
    doc.add_paragraph("The Quexlan bridge was completed in 1873 by the engineer Marta Velloso. "
                      "It spans the river Ondra with seven stone arches.")
    doc.add_heading("Maintenance", 2)
    doc.add_paragraph("Inspectors climb the arches every spring and replace loose stones. " * 12)
    doc.add_heading("Traffic", 2)
    doc.add_paragraph("Only pedestrians and bicycles may cross since 1990. " * 12)
    doc.save(folder / "quexlan.docx")
    (folder / "garden.md").write_text("# Garden notes\n\nTomatoes need full sun and regular watering.\n",
                                      encoding="utf-8")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 not really a pdf")
    return {p.name: p for p in folder.iterdir()}


@contextmanager
def embedding_held(services: Any) -> Iterator[None]:
    """Hold the SQLite embedding lock file, as a busy embedding process does: the server's worker waits."""
    with (services.settings.home / "zhiku.db.embed.lock").open("a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"webui-{name}.png"), full_page=True)


def textbox(page: Page, elem_id: str) -> Any:
    return page.locator(f"#{elem_id}").get_by_role("textbox").first


def ask(page: Page, question: str) -> list[str]:
    """Send a question and sample the answer bubble until the answer is complete; returns the samples."""
    bots = page.locator("#chatbot [data-testid=bot]")
    before = bots.count()
    textbox(page, "chat-input").fill(question)
    page.locator("#chat-send").click()
    expect(bots).to_have_count(before + 1, timeout=30_000)  # the same update clears #chat-note
    samples: list[str] = []
    note = page.locator("#chat-note")
    deadline = time.monotonic() + 90
    while "tokens" not in note.inner_text():
        assert time.monotonic() < deadline, "the answer did not finish"
        samples.append(bots.last.inner_text())
        page.wait_for_timeout(30)
    samples.append(bots.last.inner_text())
    return samples


def test_server_routes_still_work_beside_the_ui(server: tuple[str, Any]) -> None:
    base, _ = server
    page = httpx.get(base + "/")
    assert page.status_code == 200 and "gradio" in page.text.lower()
    assert httpx.get(base + "/health").json()["status"] == "ok"
    assert httpx.get(base + "/v1/models").json()["data"][0]["id"] == "smollm2-135m"
    assert httpx.get(base + "/openapi.json").status_code == 200
    # a miss under a server prefix gets the server's own error, not Gradio's page
    for path in ("/v1/nope", "/api/nope", "/metrics/nope", "/ui/files/none/1"):
        r = httpx.get(base + path)
        assert r.status_code == 404, path
        assert "error" in r.json(), path


def test_kb_chat_feedback_export_and_delete_in_the_browser(server: tuple[str, Any], browser: Any,
                                                           files: dict[str, Path]) -> None:
    base, services = server
    context = browser.new_context(locale="en-US", viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    hosts: set[str] = set()
    page.on("request", lambda r: hosts.add(r.url.split("/")[2]))
    page.goto(base + "/")

    # --- knowledge base: create, upload three files at once, per-file result, chunk counts
    page.get_by_role("tab", name="Knowledge bases").click()
    textbox(page, "kb-name").fill("handbook")
    textbox(page, "kb-desc").fill("bridge facts")
    page.locator("#kb-create-btn").click()
    # the first knowledge base loads the embedder: slow on a busy 2-core box
    expect(page.locator("#kb-info")).to_contain_text("handbook", timeout=60_000)
    page.locator("#kb-files input[type=file]").set_input_files([str(p) for p in files.values()])
    # Two phases: the test holds the embedding lock (what a busy embedding process holds), so the add
    # answers with the files searchable and the embedding line says none is embedded yet; released, the
    # line follows the server's worker to "embedded" without a click.
    embedding = page.locator("#kb-embedding")
    with embedding_held(services):
        page.locator("#kb-add").click()
        results = page.locator("#kb-results")
        expect(results).to_contain_text("broken.pdf", timeout=60_000)
        total = services.kb.get("handbook").chunks
        expect(embedding).to_have_text(f"✓ searchable (full text) · embedding 0 / {total} chunks (dense search "
                                       "covers the embedded ones)")
        expect(page.locator("#kb-note")).to_contain_text("searchable now; vectors follow in the background")
        assert services.kb.search("handbook", "Marta Velloso", mode="bm25")[0].document == "quexlan.docx"
    expect(embedding).to_have_text("✓ searchable (full text) · ✓ embedded", timeout=60_000)
    assert services.kb.get("handbook").embedded_chunks == total
    docs = {d.path: d for d in services.kb.documents("handbook")}
    assert docs["quexlan.docx"].status == "ok" and docs["quexlan.docx"].chunk_count >= 2
    assert docs["broken.pdf"].status == "failed"
    expect(results).to_contain_text("failed")
    table = page.locator("#kb-docs")
    for name, d in docs.items():
        row = table.get_by_role("row").filter(has_text=name)
        expect(row.get_by_role("gridcell").nth(3)).to_have_text(str(d.chunk_count))  # the Chunks column
    expect(page.locator("#kb-note")).to_contain_text("2 ok, 0 unchanged, 1 failed")
    # the same files again: what is already in with the same content says "unchanged", not "ok"
    page.locator("#kb-files input[type=file]").set_input_files([str(p) for p in files.values()])
    page.locator("#kb-add").click()
    expect(page.locator("#kb-note")).to_contain_text("0 ok, 2 unchanged, 1 failed", timeout=60_000)
    row = results.get_by_role("row").filter(has_text="quexlan.docx")
    expect(row.get_by_role("gridcell").nth(2)).to_have_text("unchanged (already in, same content)")
    assert {d.path: d.id for d in services.kb.documents("handbook")} == {p: d.id for p, d in docs.items()}
    # a document's chunks
    page.locator("#kb-doc input").click()
    page.get_by_role("option", name=f"{docs['quexlan.docx'].id} · quexlan.docx").click()
    page.locator("#kb-view").click()
    expect(page.locator("#kb-chunks")).to_contain_text("Marta Velloso")
    shot(page, "kb")
    # re-index that document, try retrieval alone, delete another document, rebuild the base
    note = page.locator("#kb-note")
    page.locator("#kb-reindex").click()
    expect(note).to_contain_text(f"Re-indexed quexlan.docx: {docs['quexlan.docx'].chunk_count} chunks")
    page.get_by_role("button", name="Try retrieval").click()
    textbox(page, "kb-query").fill("Who built the bridge over the Ondra?")
    page.locator("#kb-search-btn").click()
    expect(page.locator("#kb-hits li").first).to_contain_text("quexlan.docx")
    page.locator("#kb-doc input").click()
    page.get_by_role("option", name=f"{docs['garden.md'].id} · garden.md").click()
    page.locator("#kb-delete-doc").click()
    expect(note).to_contain_text("Deleted document garden.md")
    expect(table.get_by_role("row").filter(has_text="garden.md")).to_have_count(0)
    # The rebuild goes through the queue: the line shows it (held), then the switch to the new vectors.
    epoch = services.kb.store.get_kb("handbook").vector_epoch
    with embedding_held(services):
        page.locator("#kb-rebuild").click()
        expect(note).to_contain_text("Rebuilding knowledge base handbook in the background")
        total = services.kb.get("handbook").chunks
        expect(embedding).to_contain_text(f"rebuilding with use-m3: 0 / {total} chunks")
        assert services.kb.store.get_kb("handbook").vector_epoch == epoch  # the old vectors still serve
    expect(embedding).to_have_text("✓ searchable (full text) · ✓ embedded", timeout=60_000)
    assert services.kb.store.get_kb("handbook").vector_epoch == epoch + 1
    assert sorted(d.path for d in services.kb.documents("handbook")) == ["broken.pdf", "quexlan.docx"]

    # --- knowledge-base QA: the answer streams in, the right source shows, with a working download
    page.get_by_role("tab", name="Chat").click()
    page.locator("#chat-mode").get_by_text("Knowledge-base QA").click()
    expect(page.locator("#chat-kb input")).to_have_value("handbook")
    samples = ask(page, QUESTION)
    answer_parts = {s.split("Sources")[0].strip() for s in samples if "Sources" in s}
    assert len(answer_parts) >= 3, f"the answer did not stream: {answer_parts}"
    last = page.locator("#chatbot [data-testid=bot]").last
    first_source = last.locator("ol li").first
    expect(first_source).to_contain_text("quexlan.docx")
    href = first_source.get_by_role("link", name="download").get_attribute("href")
    assert href is not None
    download = page.request.get(base + href)
    assert download.status == 200 and download.body() == files["quexlan.docx"].read_bytes()

    # --- feedback: thumbs down with a reason lands on the stored answer
    page.locator("#chatbot button[aria-label=Dislike]").last.click()
    textbox(page, "chat-reason").fill("too vague")
    page.locator("#chat-reason-send").click()
    # the reason's own note: the thumb's "Feedback recorded" shows before the reason is stored
    expect(page.locator("#chat-note")).to_contain_text("Feedback reason recorded")
    conversation = services.chat.list_conversations()[0]
    stored = services.chat.get_conversation(conversation["id"])["messages"][-1]
    assert (stored["feedback_score"], stored["feedback_reason"]) == (-1, "too vague")
    shot(page, "chat-kb")

    # --- plain LLM chat in the same conversation: no sources under that answer
    page.locator("#chat-mode").get_by_text("LLM chat").click()
    ask(page, "Say hello.")
    assert "Sources" not in page.locator("#chatbot [data-testid=bot]").last.inner_text()

    # --- export to Markdown
    page.locator("#chat-export").click()
    link = page.locator("#chat-export-file a").first
    with page.expect_download() as info:
        link.click()
    exported = Path(info.value.path()).read_text(encoding="utf-8")
    assert QUESTION in exported and "Say hello." in exported
    assert "quexlan.docx" in exported and "too vague" in exported

    # --- past conversations: start afresh, resume the stored one, delete it
    bots = page.locator("#chatbot [data-testid=bot]")
    page.locator("#chat-new").click()
    expect(bots).to_have_count(0)
    page.get_by_role("button", name="Conversations").click()
    page.locator("#chat-convs input").click()
    page.get_by_role("option", name=QUESTION[:20], exact=False).click()
    page.locator("#chat-open").click()
    expect(bots).to_have_count(2)
    expect(bots.first).to_contain_text("quexlan.docx")
    page.locator("#chat-delete").click()
    expect(bots).to_have_count(0)
    assert services.chat.list_conversations() == []

    # --- status page: model, slots, requests served, the knowledge base and its size
    page.get_by_role("tab", name="Status").click()
    status = page.locator("#status-text")
    expect(status).to_contain_text("handbook")
    expect(status).to_contain_text("smollm2-135m")
    served = services.llm.stats()["requests_total"]
    assert served >= 2
    expect(status.get_by_role("row").filter(has_text="Requests served")).to_contain_text(str(served))
    shot(page, "status")

    # --- delete the knowledge base behind a confirmation
    page.get_by_role("tab", name="Knowledge bases").click()
    page.locator("#kb-delete").click()
    expect(page.locator("#kb-confirm-row")).to_be_visible()
    page.locator("#kb-cancel").click()
    expect(page.locator("#kb-confirm-row")).to_be_hidden()
    assert [k.name for k in services.kb.list()] == ["handbook"]
    page.locator("#kb-delete").click()
    page.locator("#kb-confirm").click()
    expect(page.locator("#kb-note")).to_contain_text("Deleted knowledge base")
    assert services.kb.list() == []

    # offline: the page fetched nothing from anywhere but this server
    assert hosts == {base.split("/")[2]}
    context.close()


def test_file_chat_upload_is_searchable_at_once_then_embedded(server: tuple[str, Any], browser: Any,
                                                              tmp_path: Path) -> None:
    """File chat's uploads are two-phase too: a question right after the upload is answered from what is
    ready (BM25 while nothing is embedded), and the status line follows the worker to "embedded"."""
    base, services = server
    note = tmp_path / "ferry.txt"
    note.write_text("Ferry timetable. The Quexlan ferry to Ondra island leaves at 7:40 every morning from pier "
                    "nine; tickets cost four crowns.\n\n" + "The harbour office sells season passes. " * 30)
    context = browser.new_context(locale="en-US", viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(base + "/")
    page.locator("#chat-mode").get_by_text("File chat").click()
    status = page.locator("#chat-file-status")
    with embedding_held(services):
        page.locator("#chat-files input[type=file]").set_input_files([str(note)])
        expect(page.locator("#chat-file-note")).to_contain_text("ferry.txt", timeout=60_000)
        expect(status).to_contain_text("✓ searchable (full text) · embedding 0 / ")
        samples = ask(page, "When does the Quexlan ferry leave?")
        assert samples
        expect(page.locator("#chatbot [data-testid=bot]").last.locator("ol li").first).to_contain_text("ferry.txt")
        kb_name = next(k.name for k in services.kb.list(include_temporary=True) if k.temporary)
        assert services.kb.get(kb_name).embedded_chunks == 0  # answered before any vector existed
    expect(status).to_have_text("✓ searchable (full text) · ✓ embedded", timeout=60_000)
    info = services.kb.get(kb_name)
    assert info.embedded_chunks == info.chunks > 0  # the worker serves temporary bases too
    shot(page, "chat-file")
    context.close()


def test_labels_follow_the_browser_language(server: tuple[str, Any], browser: Any) -> None:
    base, _ = server
    context = browser.new_context(locale="zh-CN", viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(base + "/")
    expect(page.get_by_role("tab", name="知识库")).to_be_visible()
    expect(page.locator("#chat-mode")).to_contain_text("知识库问答")
    expect(page.locator("#chat-send")).to_have_text("发送")
    shot(page, "chat-zh")
    page.get_by_role("tab", name="状态").click()
    expect(page.locator("#status-text")).to_contain_text("并行槽位")  # server-side text follows too
    shot(page, "status-zh")
    context.close()


def test_api_key_gate_and_fixed_language(tmp_path: Path, smollm_path: Path, browser: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZHIKU_HOME", str(tmp_path))
    settings = ui_settings(tmp_path, smollm_path, api_key="s3cret-key", language="zh")
    with running(create_app(settings, preload=False)) as base:
        assert httpx.get(base + "/ui/files/any/1").status_code == 401
        context = browser.new_context(locale="en-US")
        page = context.new_page()
        page.goto(base + "/")
        password = page.locator("input[type=password]")
        expect(password).to_be_visible(timeout=20_000)
        expect(page.get_by_role("tab", name="对话")).to_have_count(0)
        shot(page, "login")
        user = page.locator("input[type=text]").first
        user.fill("me")
        password.fill("wrong")
        page.get_by_role("button", name="Login").click()
        expect(page.get_by_text("Incorrect", exact=False)).to_be_visible()
        user.fill("me")  # Gradio's login form clears the user name after a failure
        password.fill("s3cret-key")
        page.get_by_role("button", name="Login").click()
        # language="zh" wins over the English browser
        expect(page.get_by_role("tab", name="对话")).to_be_visible(timeout=20_000)
        context.close()
