"""The chat page: every mode, streamed answers with numbered sources, agent trace, feedback, history."""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import gradio as gr
from pydantic import ValidationError

from zhiku.chat.sources import KBSource, sources_from
from zhiku.chat.types import ID_PATTERN, MODES, ChatEvent, ChatRequest
from zhiku.cjk import HAN
from zhiku.webui import render
from zhiku.webui.context import UI, bind
from zhiku.webui.i18n import Lang, t

ENGINES = ["searxng", "duckduckgo"]
STREAM_INTERVAL = 0.05  # seconds between UI updates while tokens arrive: smooth, without flooding the socket
DOWNLOAD_ROUTE = "/ui/files"
TICK_SECONDS = 2.0  # how often the file-upload status refreshes while the uploads embed


def download_link(source: KBSource) -> str | None:
    """The UI's own download route for a knowledge-base source (see app.py for why not /api)."""
    if source.kb and source.document_id is not None:
        return f"{DOWNLOAD_ROUTE}/{quote(source.kb, safe='')}/{int(source.document_id)}"
    return None


def answer_content(answer: str, sources: list[dict[str, Any]], lang: Lang) -> str:
    block = render.sources_markdown(sources_from(sources), lang, download_link)
    return f"{answer}\n\n{block}" if block else answer


def tool_message(call: dict[str, Any], lang: Lang) -> dict[str, Any]:
    done = call.get("result") is not None
    meta: dict[str, Any] = {"title": t(lang, "tool_call", name=call.get("name", "?")),
                            "status": "done" if done else "pending"}
    if call.get("ok") is False:
        meta["log"] = "✗"
    return {"role": "assistant", "content": render.tool_trace(call, lang), "metadata": meta}


def history_from(conversation: dict[str, Any], lang: Lang) -> tuple[list[dict[str, Any]], list[str | None]]:
    """A stored conversation as chatbot messages, and the message id behind each (None for trace rows)."""
    messages: list[dict[str, Any]] = []
    ids: list[str | None] = []
    for m in conversation.get("messages", []):
        if m["role"] == "user":
            messages.append({"role": "user", "content": m["content"]})
            ids.append(None)
            continue
        for call in m.get("tool_calls") or []:
            messages.append(tool_message(call, lang))
            ids.append(None)
        messages.append({"role": "assistant", "content": answer_content(m["content"], m.get("sources") or [], lang)})
        ids.append(m["id"])
    return messages, ids


def conversation_choices(ui: UI, lang: Lang) -> list[tuple[str, str]]:
    out = []
    for c in ui.services.chat.list_conversations(limit=200):
        title = c.get("title") or t(lang, "untitled")
        out.append((f"{title} · {render.when(c.get('updated'))}", c["id"]))
    return out


def template_choices(ui: UI, mode: str) -> list[str]:
    names: list[str] = ui.services.chat.templates()["templates"].get(mode, [])
    return names or ["default"]


def build(ui: UI) -> dict[str, Any]:
    L = ui.label
    s = ui.settings
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=280, elem_id="chat-sidebar"):
            mode = gr.Radio([(L(f"mode_{m}"), m) for m in MODES], value="llm", label=L("mode"),
                            elem_id="chat-mode")
            with gr.Group(visible=False, elem_id="chat-kb-options") as kb_group:
                kb = gr.Dropdown(label=L("kb"), choices=[], value=None, elem_id="chat-kb")
                top_k = gr.Slider(1, 20, value=s.top_k, step=1, label=L("top_k"))
                threshold = gr.Slider(0.0, 1.0, value=s.score_threshold, step=0.01, label=L("score_threshold"))
            with gr.Group(visible=False, elem_id="chat-file-options") as file_group:
                files = gr.File(label=L("files"), file_count="multiple", elem_id="chat-files")
                file_note = gr.Markdown(elem_id="chat-file-note")
                file_status = gr.Markdown(elem_id="chat-file-status")  # searchable, then embedded
                file_ticker = gr.Timer(TICK_SECONDS, active=False)  # while the uploads embed
            with gr.Group(visible=False, elem_id="chat-search-options") as search_group:
                engine = gr.Dropdown(ENGINES, value=s.search_engine, label=L("engine"))
            with gr.Accordion(L("settings"), open=True, elem_id="chat-settings"):
                model = gr.Dropdown(label=L("model"), choices=[], value=None, elem_id="chat-model")
                template = gr.Dropdown(label=L("template"), choices=["default"], value="default",
                                       elem_id="chat-template")
                temperature = gr.Slider(0.0, 2.0, value=s.temperature, step=0.05, label=L("temperature"))
                turns = gr.Slider(0, 20, value=s.history_turns, step=1, label=L("history_turns"))
            with gr.Accordion(L("conversations"), open=False, elem_id="chat-history"):
                convs = gr.Dropdown(label=L("conversation"), choices=[], value=None, elem_id="chat-convs")
                with gr.Row():
                    open_conv = gr.Button(L("open"), size="sm", elem_id="chat-open")
                    delete_conv = gr.Button(L("delete"), size="sm", variant="stop", elem_id="chat-delete")
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(label=L("chatbot"), show_label=False, height=560, elem_id="chatbot",
                                 layout="bubble", feedback_options=("Like", "Dislike"), buttons=["copy"],
                                 group_consecutive_messages=False)
            with gr.Row():
                query = gr.Textbox(show_label=False, placeholder=L("input_ph"), scale=6, lines=1, max_lines=6,
                                   elem_id="chat-input", autofocus=True)
                send = gr.Button(L("send"), variant="primary", scale=1, min_width=80, elem_id="chat-send")
                stop = gr.Button(L("stop"), variant="secondary", scale=1, min_width=80, elem_id="chat-stop")
            with gr.Row(visible=False, elem_id="chat-feedback") as fb_row:
                reason = gr.Textbox(label=L("feedback_reason"), scale=5, elem_id="chat-reason")
                send_reason = gr.Button(L("feedback_send"), scale=1, elem_id="chat-reason-send")
            note = gr.Markdown(elem_id="chat-note")
            with gr.Row():
                new_chat = gr.Button(L("new_chat"), size="sm", elem_id="chat-new")
                clear = gr.Button(L("clear"), size="sm", elem_id="chat-clear")
                export = gr.Button(L("export"), size="sm", elem_id="chat-export")
            export_file = gr.File(label=L("export_file"), visible=False, interactive=False, elem_id="chat-export-file")

    conv = gr.State(None)        # conversation id, once the first answer is stored
    ids = gr.State([])           # message id behind each chatbot row (None: question or trace row)
    pending = gr.State(None)     # (message id, score) awaiting an optional reason

    # ---- handlers ----

    def on_mode(m: str) -> tuple[Any, ...]:
        names = template_choices(ui, m)
        return (gr.update(visible=m == "kb"), gr.update(visible=m == "file"), gr.update(visible=m == "search"),
                gr.update(choices=names, value="default" if "default" in names else names[0]))

    async def on_send(q: str, history: list[dict[str, Any]], cid: str | None, row_ids: list[str | None], m: str,
                      model_id: str | None, tmpl: str | None, temp: float, n_turns: float, kb_name: str | None,
                      k: float, thr: float, eng: str | None, request: gr.Request) -> AsyncIterator[tuple[Any, ...]]:
        lang = ui.lang(request)
        q = (q or "").strip()
        if not q:
            return
        if m == "kb" and not kb_name:
            gr.Warning(t(lang, "kb_chat_needs_kb"))
            return
        try:
            req = ChatRequest.model_validate({
                "query": q, "mode": m, "conversation_id": cid, "history_turns": int(n_turns), "model": model_id,
                "prompt_name": tmpl or None, "temperature": temp, "kb": kb_name if m == "kb" else None,
                "top_k": int(k), "score_threshold": thr, "search_engine": eng if m == "search" else None})
        except ValidationError as e:
            gr.Warning(str(e))
            return
        history = [*history, {"role": "user", "content": q}, {"role": "assistant", "content": ""}]
        row_ids = [*row_ids, None, None]
        yield history, "", cid, row_ids, ""
        answer, last, started, stats = "", 0.0, time.monotonic(), ""
        sources: list[dict[str, Any]] = []
        calls: dict[str, dict[str, Any]] = {}
        # aclosing: a cancelled event (Stop, tab closed) closes the stream, which frees the generation slot
        async with aclosing(cast(AsyncGenerator[ChatEvent, None], ui.services.chat.stream(req))) as stream:
            async for ev in stream:
                if ev.type == "delta":  # a correction replaces the answer shown so far (chat/answer_stream.py)
                    d = ev.data
                    answer = d["replace"] if "replace" in d else answer + d.get("text", "")
                elif ev.type == "sources":
                    sources = list(ev.data.get("sources", []))
                elif ev.type in ("tool_call", "tool_result"):
                    _trace(ev, calls, history, row_ids, lang)
                elif ev.type == "done":
                    cid = ev.data.get("conversation_id") or cid
                    row_ids[-1] = ev.data.get("message_id")
                    usage = ev.data.get("usage") or {}
                    stats = t(lang, "answer_stats", model=model_id or ui.services.llm.model_id,
                              tokens=usage.get("completion_tokens", 0), seconds=time.monotonic() - started)
                elif ev.type == "error":
                    answer += ("\n\n" if answer else "") + "⚠️ " + t(lang, "error", message=ev.data.get("message", ""))
                now = time.monotonic()
                if ev.type != "delta" or now - last >= STREAM_INTERVAL:
                    history[-1] = {"role": "assistant", "content": answer_content(answer, sources, lang)}
                    last = now
                    yield history, "", cid, row_ids, ""
        history[-1] = {"role": "assistant", "content": answer_content(answer, sources, lang)}
        yield history, "", cid, row_ids, stats

    def on_like(row_ids: list[str | None], evt: gr.LikeData, request: gr.Request) -> tuple[Any, ...]:
        lang = ui.lang(request)
        index = evt.index if isinstance(evt.index, int) else evt.index[0]
        mid = row_ids[index] if 0 <= index < len(row_ids) else None
        if mid is None or evt.liked in (None, ""):
            return None, gr.update(visible=False), t(lang, "feedback_nothing")
        score = 1 if evt.liked is True or evt.liked == "Like" else -1
        ui.services.chat.add_feedback(mid, score)
        return (mid, score), gr.update(visible=True), t(lang, "feedback_thanks")

    def on_reason(p: tuple[str, int] | None, text: str, request: gr.Request) -> tuple[Any, ...]:
        lang = ui.lang(request)
        if p is not None:
            ui.services.chat.add_feedback(p[0], p[1], (text or "").strip()[:2000])
        return None, gr.update(visible=False), "", t(lang, "feedback_reason_saved" if p is not None else "feedback_nothing")

    def on_export(cid: str | None, request: gr.Request) -> tuple[Any, ...]:
        lang = ui.lang(request)
        if not cid or not re.fullmatch(ID_PATTERN, cid):
            return gr.update(visible=False), t(lang, "nothing_to_export")
        text = ui.services.chat.export_markdown(cid)
        title = ui.services.chat.get_conversation(cid).get("title") or cid
        stem = re.sub(f"[^\\w{HAN}-]+", "_", title).strip("_")[:40] or cid
        # one folder per conversation, overwritten on each export: repeated exports do not pile up
        folder = Path(tempfile.gettempdir()) / "zhiku-export" / cid
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.md"):
            old.unlink()
        path = folder / f"zhiku-{stem}.md"
        path.write_text(text, encoding="utf-8")
        return gr.update(value=str(path), visible=True), t(lang, "exported")

    def on_clear() -> tuple[Any, ...]:
        return [], None, [], gr.update(visible=False), gr.update(value=None, visible=False), "", None, "", ""

    def on_convs(request: gr.Request) -> Any:
        return gr.update(choices=conversation_choices(ui, ui.lang(request)))

    def on_open(pick: str | None, request: gr.Request) -> tuple[Any, ...]:
        lang = ui.lang(request)
        if not pick:
            return gr.update(), gr.update(), gr.update(), gr.update()
        c = ui.services.chat.get_conversation(pick)
        history, row_ids = history_from(c, lang)
        m = c.get("mode") if c.get("mode") in MODES else "llm"
        return history, pick, row_ids, gr.update(value=m)

    def on_delete(pick: str | None, cid: str | None, request: gr.Request) -> tuple[Any, ...]:
        lang = ui.lang(request)
        if pick:
            ui.services.chat.delete_conversation(pick)
        choices = gr.update(choices=conversation_choices(ui, lang), value=None)
        if pick and pick == cid:
            return choices, [], None, [], t(lang, "conv_deleted")
        return choices, gr.update(), gr.update(), gr.update(), t(lang, "conv_deleted")

    def on_files(value: Any, cid: str | None, request: gr.Request) -> tuple[Any, ...]:
        """Uploads answer once searchable (a question may follow at once: BM25 over every chunk, dense over
        those embedded); the status line follows the background embedding."""
        lang = ui.lang(request)
        paths = [Path(str(getattr(f, "name", f))) for f in (value or [])]
        if not paths:
            return cid, "", gr.update(), gr.update()
        data = [(p.name, p.read_bytes()) for p in paths]
        result = ui.services.chat.upload_files(data, cid)
        lines = [f"- {d['path']}: {d['chunks']} {t(lang, 'chunks')}" + (f" ({d['error']})" if d.get("error") else "")
                 for d in result["documents"]]
        lines += [f"- {e['filename']}: ⚠️ {e['error']}" for e in result["errors"]]
        return (result["conversation_id"], "\n".join(lines), *_file_status(ui, cid=result["conversation_id"],
                                                                            lang=lang))

    def on_file_tick(cid: str | None, request: gr.Request) -> tuple[Any, ...]:
        return _file_status(ui, cid, ui.lang(request))

    mode.change(on_mode, [mode], [kb_group, file_group, search_group, template])
    inputs = [query, chatbot, conv, ids, mode, model, template, temperature, turns, kb, top_k, threshold, engine]
    outputs = [chatbot, query, conv, ids, note]
    limit = s.parallel + s.queue_size  # the LLM's own queue decides who waits; Gradio should not serialise
    sent: list[Any] = [
        send.click(on_send, inputs, outputs, concurrency_limit=limit, concurrency_id="chat"),
        query.submit(on_send, inputs, outputs, concurrency_limit=limit, concurrency_id="chat"),
    ]
    for ev in sent:
        ev.then(on_convs, None, [convs])
    stop.click(None, None, None, cancels=sent)
    bind(chatbot.like, on_like, [ids], [pending, fb_row, note])
    bind(send_reason.click, on_reason, [pending, reason], [pending, fb_row, reason, note])
    bind(export.click, on_export, [conv], [export_file, note])
    clear_outputs = [chatbot, conv, ids, fb_row, export_file, note, pending, file_note, file_status]
    clear.click(on_clear, None, clear_outputs)
    chatbot.clear(on_clear, None, clear_outputs)  # the chatbot's own trash icon: forget the conversation too
    new_chat.click(on_clear, None, clear_outputs)
    bind(open_conv.click, on_open, [convs], [chatbot, conv, ids, mode])
    bind(delete_conv.click, on_delete, [convs, conv], [convs, chatbot, conv, ids, note])
    bind(files.upload, on_files, [files, conv], [conv, file_note, file_status, file_ticker])
    bind(file_ticker.tick, on_file_tick, [conv], [file_status, file_ticker])

    def on_load(request: gr.Request) -> tuple[Any, ...]:
        lang = ui.lang(request)
        names = [k.name for k in ui.services.kb.list()]
        return (gr.update(choices=ui.services.llm.model_ids(), value=ui.services.llm.model_id),
                gr.update(choices=names, value=names[0] if names else None),
                gr.update(choices=conversation_choices(ui, lang)),
                gr.update(choices=template_choices(ui, "llm"), value="default"))

    return {"load": (on_load, None, [model, kb, convs, template]), "kb": kb}


def _file_status(ui: UI, cid: str | None, lang: Lang) -> tuple[str, gr.Timer]:
    """The conversation's uploads: searchable, and how far their embedding is; the timer runs until done."""
    info = ui.services.chat.file_status(cid) if cid else None
    if info is None:
        return "", gr.Timer(active=False)
    return render.embedding_markdown(info, lang), gr.Timer(active=info.embedded_chunks < info.chunks)


def _trace(ev: ChatEvent, calls: dict[str, dict[str, Any]], history: list[dict[str, Any]],
           row_ids: list[str | None], lang: Lang) -> None:
    """Show an agent step as a collapsible row just above the answer; a result fills in its call's row."""
    key = str(ev.data.get("id") or len(calls))
    if ev.type == "tool_call":
        calls[key] = {**ev.data, "result": None, "row": len(history) - 1}
        history.insert(len(history) - 1, tool_message(calls[key], lang))
        row_ids.insert(len(row_ids) - 1, None)
        return
    call = calls.get(key)
    if call is None:
        return
    call.update(result=ev.data.get("result", ""), ok=ev.data.get("ok", True))
    history[call["row"]] = tool_message(call, lang)
