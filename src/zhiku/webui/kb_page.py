"""The knowledge-base page: create, upload, inspect, re-index, rebuild, delete, and try retrieval.

Adding files has two phases, as everywhere: the add button answers once the files are searchable (full
text), and a line under the base's description follows the background embedding ("embedding 1,240 / 5,000
chunks, ~4 min left", then "embedded"), refreshed by a timer that runs only while the base is embedding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from zhiku.kb.ingest import Outcome
from zhiku.kb.types import DocInfo, KBInfo, KBNotFound, Progress
from zhiku.webui import render
from zhiku.webui.context import UI, UserError, bind, guarded, table
from zhiku.webui.i18n import Lang, t

EMBEDDERS = ["e5-small", "use-m3"]
TICK_SECONDS = 2.0


def kb_choices(ui: UI) -> list[str]:
    return [k.name for k in ui.services.kb.list()]


def _doc_choices(docs: list[DocInfo]) -> list[tuple[str, int]]:
    return [(f"{d.id} · {d.path}", d.id) for d in docs]


def _files(value: Any) -> list[Path]:
    """Paths of the files a gr.File(file_count="multiple") handed over."""
    if not value:
        return []
    items = value if isinstance(value, list) else [value]
    return [Path(str(getattr(f, "name", f))) for f in items]


def _reporter(progress: gr.Progress, lang: Lang) -> Progress:
    """The service's progress callback ("files" | "chunks" | "index" | "ocr", done, total) as Gradio's bar."""
    def report(what: str, done: int, total: int) -> None:
        progress((done, max(total, 1)), desc=t(lang, f"progress_{what}"), unit=what)

    return report


def build(ui: UI) -> dict[str, Any]:
    """Lay out the page inside the current Blocks context; returns components other pages refresh."""
    L = ui.label
    s = ui.settings
    embedders = list(dict.fromkeys([s.embedder, *EMBEDDERS]))
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            kb = gr.Dropdown(label=L("kb_select"), choices=[], value=None, elem_id="kb-select",
                             allow_custom_value=False)
            refresh = gr.Button(L("refresh"), size="sm", elem_id="kb-refresh")
            with gr.Accordion(L("create_kb"), open=True, elem_id="kb-create"):
                name = gr.Textbox(label=L("kb_name"), placeholder=L("kb_name_ph"), elem_id="kb-name")
                desc = gr.Textbox(label=L("kb_desc"), elem_id="kb-desc")
                embedder = gr.Dropdown(label=L("embedder"), choices=embedders, value=s.embedder,
                                       allow_custom_value=True, elem_id="kb-embedder")
                with gr.Row():
                    chunk_size = gr.Number(label=L("chunk_size"), value=s.chunk_size, precision=0, minimum=50)
                    overlap = gr.Number(label=L("chunk_overlap"), value=s.chunk_overlap, precision=0, minimum=0)
                title_enhance = gr.Checkbox(label=L("title_enhance"), value=s.title_enhance)
                create = gr.Button(L("create"), variant="primary", elem_id="kb-create-btn")
        with gr.Column(scale=3):
            info = gr.Markdown(elem_id="kb-info")
            embedding = gr.Markdown(elem_id="kb-embedding")
            ticker = gr.Timer(TICK_SECONDS, active=False)  # while the base embeds: its progress line
            with gr.Row():
                files = gr.File(label=L("upload"), file_count="multiple", elem_id="kb-files", scale=3)
                with gr.Column(scale=1, min_width=160):
                    add = gr.Button(L("add_files"), variant="primary", elem_id="kb-add")
                    rebuild = gr.Button(L("rebuild"), elem_id="kb-rebuild")
                    delete_kb = gr.Button(L("delete_kb"), variant="stop", elem_id="kb-delete")
            with gr.Row(visible=False, elem_id="kb-confirm-row") as confirm_row:
                confirm_text = gr.Markdown()
                confirm = gr.Button(L("confirm_delete"), variant="stop", elem_id="kb-confirm")
                cancel = gr.Button(L("cancel"), elem_id="kb-cancel")
            note = gr.Markdown(elem_id="kb-note")
            results = gr.Dataframe(label=L("upload_result"), interactive=False, visible=False, wrap=True,
                                   elem_id="kb-results", column_widths=["35%", "10%", "55%"])
            docs = gr.Dataframe(label=L("documents"), interactive=False, wrap=True, elem_id="kb-docs",
                                max_height=360, column_widths=["7%", "30%", "8%", "9%", "31%", "15%"])
            with gr.Row():
                doc = gr.Dropdown(label=L("doc_select"), choices=[], value=None, elem_id="kb-doc", scale=3)
                view = gr.Button(L("view_chunks"), elem_id="kb-view", scale=1)
                reindex = gr.Button(L("reindex"), elem_id="kb-reindex", scale=1)
                delete_doc = gr.Button(L("delete_doc"), variant="stop", elem_id="kb-delete-doc", scale=1)
            chunks = gr.Dataframe(label=L("chunks"), interactive=False, wrap=True, visible=False,
                                  elem_id="kb-chunks", max_height=400, column_widths=["6%", "8%", "22%", "64%"])
            with gr.Accordion(L("search_test"), open=False, elem_id="kb-search"):
                with gr.Row():
                    query = gr.Textbox(label=L("query"), scale=4, elem_id="kb-query")
                    top_k = gr.Slider(1, 20, value=s.top_k, step=1, label=L("top_k"), scale=2)
                    mode = gr.Radio(["hybrid", "bm25", "dense"], value="hybrid", label=L("search_mode"),
                                    scale=2)
                search = gr.Button(L("search"), elem_id="kb-search-btn")
                hits = gr.Markdown(elem_id="kb-hits")

    # ---- handlers: blocking service calls, run by Gradio on worker threads ----

    def _view(name: str | None, lang: Lang, selected: int | None = None) -> tuple[Any, ...]:
        """Info, documents table and document choices for one knowledge base."""
        if not name:
            return (t(lang, "no_kb_here") if not kb_choices(ui) else t(lang, "pick_kb"), "",
                    gr.Timer(active=False), table(*render.documents_table([], lang)),
                    gr.update(choices=[], value=None))
        kbi = ui.services.kb.get(name)
        documents = ui.services.kb.documents(name)
        ids = {d.id for d in documents}
        return (render.kb_info(kbi, lang), *_embedding(kbi, lang), table(*render.documents_table(documents, lang)),
                gr.update(choices=_doc_choices(documents), value=selected if selected in ids else None))

    def _embedding(kbi: KBInfo, lang: Lang) -> tuple[str, gr.Timer]:
        """The base's embedding line, and the timer that refreshes it while part of the base waits."""
        return render.embedding_markdown(kbi, lang), gr.Timer(active=not _settled(kbi))

    def on_tick(name: str | None, request: gr.Request) -> tuple[Any, ...]:
        if not name:
            return "", gr.Timer(active=False)
        try:
            kbi = ui.services.kb.get(name)
        except KBNotFound:
            return "", gr.Timer(active=False)
        return _embedding(kbi, ui.lang(request))

    def on_refresh(name: str | None, request: gr.Request) -> tuple[Any, ...]:
        lang = ui.lang(request)
        names = kb_choices(ui)
        name = name if name in names else (names[0] if names else None)
        return (gr.update(choices=names, value=name), *_view(name, lang))

    def on_select(name: str | None, request: gr.Request) -> tuple[Any, ...]:
        return (*_view(name, ui.lang(request)), gr.update(visible=False), gr.update(visible=False), "")

    def on_create(n: str, d: str, emb: str, size: float | None, ov: float | None, te: bool,
                  request: gr.Request) -> tuple[Any, ...]:
        lang = ui.lang(request)
        kbi = ui.services.kb.create(n.strip(), description=d.strip(), embedder=(emb or "").strip() or None,
                                    chunk_size=int(size) if size else None,
                                    chunk_overlap=int(ov) if ov is not None else None, title_enhance=te)
        names = kb_choices(ui)
        return (gr.update(choices=names, value=kbi.name), *_view(kbi.name, lang), "", "",
                t(lang, "kb_created", name=kbi.name))

    def on_add(name: str | None, value: Any, request: gr.Request,
               progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:  # noqa: B008 - Gradio's idiom
        lang = ui.lang(request)
        if not name:
            raise UserError(t(lang, "pick_kb"))
        paths = _files(value)
        if not paths:
            raise UserError(t(lang, "no_files"))
        progress(0, desc=t(lang, "progress_files"))
        report = _reporter(progress, lang)
        # one call: files are parsed while others embed; a bad file fails alone, with its error
        # Two phases: this answers once the files are searchable; the worker embeds them in the background
        # and the page's embedding line follows it.
        outcomes: list[Outcome] = []
        ui.services.kb.add_files(name, paths, progress=report, on_file=outcomes.append, wait=False)
        failed = sum(1 for o in outcomes if o.doc.status == "failed")
        unchanged = sum(1 for o in outcomes if o.kind == "unchanged" and o.doc.status != "failed")
        summary = t(lang, "upload_done", n=len(outcomes), ok=len(outcomes) - failed - unchanged,
                    unchanged=unchanged, failed=failed)
        if len(outcomes) > failed + unchanged:
            summary += " " + t(lang, "upload_searchable")
        return (*_view(name, lang), gr.update(value=table(*render.upload_table(outcomes, lang)), visible=True),
                None, summary)

    def on_doc_row(name: str | None, evt: gr.SelectData) -> Any:
        row = evt.row_value or []
        return gr.update(value=row[0]) if row and isinstance(row[0], int) else gr.update()

    def on_view(name: str | None, doc_id: int | None, request: gr.Request) -> Any:
        lang = ui.lang(request)
        if not name or doc_id is None:
            raise UserError(t(lang, "pick_doc"))
        rows = ui.services.kb.chunks(name, int(doc_id))
        return gr.update(value=table(*render.chunks_table(rows, lang)), visible=True)

    def on_reindex(name: str | None, doc_id: int | None, request: gr.Request) -> tuple[Any, ...]:
        lang = ui.lang(request)
        if not name or doc_id is None:
            raise UserError(t(lang, "pick_doc"))
        d = ui.services.kb.reindex_document(name, int(doc_id))
        return (*_view(name, lang, d.id), t(lang, "doc_reindexed", doc=d.path, chunks=d.chunk_count))

    def on_delete_doc(name: str | None, doc_id: int | None, request: gr.Request) -> tuple[Any, ...]:
        lang = ui.lang(request)
        if not name or doc_id is None:
            raise UserError(t(lang, "pick_doc"))
        label = next((d.path for d in ui.services.kb.documents(name) if d.id == int(doc_id)), str(doc_id))
        ui.services.kb.delete_document(name, int(doc_id))
        return (*_view(name, lang), gr.update(visible=False), t(lang, "doc_deleted", doc=label))

    def on_rebuild(name: str | None, request: gr.Request) -> tuple[Any, ...]:
        """Queued for the server's worker: the base keeps its vectors until every chunk has a new one; the
        embedding line follows the rebuild."""
        lang = ui.lang(request)
        if not name:
            raise UserError(t(lang, "pick_kb"))
        ui.services.kb.rebuild(name, wait=False)
        return (*_view(name, lang), t(lang, "rebuild_started", name=name))

    def on_ask_delete(name: str | None, request: gr.Request) -> tuple[Any, ...]:
        lang = ui.lang(request)
        if not name:
            raise UserError(t(lang, "pick_kb"))
        kbi = ui.services.kb.get(name)
        return gr.update(visible=True), t(lang, "kb_confirm", name=kbi.name, docs=kbi.documents)

    def on_confirm(name: str | None, request: gr.Request) -> tuple[Any, ...]:
        lang = ui.lang(request)
        if name:
            ui.services.kb.delete(name)
        names = kb_choices(ui)
        new = names[0] if names else None
        return (gr.update(choices=names, value=new), *_view(new, lang), gr.update(visible=False),
                t(lang, "kb_deleted", name=name or ""))

    def on_search(name: str | None, q: str, k: float, m: str, request: gr.Request) -> str:
        lang = ui.lang(request)
        if not name:
            raise UserError(t(lang, "pick_kb"))
        if not q.strip():
            return ""
        return render.hits_markdown(ui.services.kb.search(name, q.strip(), top_k=int(k), mode=m), lang)

    view_out = [info, embedding, ticker, docs, doc]
    bind(refresh.click, on_refresh, [kb], [kb, *view_out])
    bind(kb.input, on_select, [kb], [*view_out, confirm_row, chunks, hits])
    bind(create.click, on_create, [name, desc, embedder, chunk_size, overlap, title_enhance],
         [kb, *view_out, name, desc, note])
    bind(add.click, on_add, [kb, files], [*view_out, results, files, note])
    bind(docs.select, on_doc_row, [kb], [doc])
    bind(view.click, on_view, [kb, doc], [chunks])
    bind(reindex.click, on_reindex, [kb, doc], [*view_out, note])
    bind(delete_doc.click, on_delete_doc, [kb, doc], [*view_out, chunks, note])
    bind(rebuild.click, on_rebuild, [kb], [*view_out, note])
    bind(delete_kb.click, on_ask_delete, [kb], [confirm_row, confirm_text])
    cancel.click(lambda: gr.update(visible=False), None, [confirm_row])
    bind(confirm.click, on_confirm, [kb], [kb, *view_out, confirm_row, note])
    bind(search.click, on_search, [kb, query, top_k, mode], [hits])
    bind(query.submit, on_search, [kb, query, top_k, mode], [hits])
    bind(ticker.tick, on_tick, [kb], [embedding, ticker])
    return {"kb": kb, "refresh": (guarded(1 + len(view_out))(on_refresh), [kb], [kb, *view_out])}


def _settled(kbi: KBInfo) -> bool:
    """Nothing left for the background worker: every chunk has its vector, no rebuild is under way."""
    return kbi.embedded_chunks >= kbi.chunks and kbi.rebuilding is None
