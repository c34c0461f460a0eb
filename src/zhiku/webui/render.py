"""Pure formatting: service results -> Markdown and table rows for the UI. No Gradio, no I/O."""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from zhiku.chat.sources import KBSource, Source, WebSource, by_role
from zhiku.kb.types import DocInfo, Hit, KBInfo
from zhiku.limits import size_text
from zhiku.webui.i18n import Lang, t

if TYPE_CHECKING:
    from zhiku.kb.ingest import Outcome

SNIPPET_CHARS = 160


def _one_line(text: str, limit: int = SNIPPET_CHARS) -> str:
    line = " ".join(str(text).split())
    return line[:limit] + ("…" if len(line) > limit else "")


def _md(text: str) -> str:
    """Text made safe inside Markdown: no HTML, no link or emphasis syntax from document content."""
    out = html.escape(text, quote=False)
    for ch in "\\`*_[]<>#|":
        out = out.replace(ch, "\\" + ch)
    return out


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else ""


def sources_markdown(sources: list[Source], lang: Lang, link: Callable[[KBSource], str | None] | None = None) -> str:
    """Numbered sources ([1], [2], ...): document, page, score, snippet and a download link; those that support
    the answer under "Sources", those only searched (all of them under a refusal) under their own title."""
    supporting, searched = by_role(sources)
    lines: list[str] = []
    for title, items in (("sources", supporting), ("sources_searched", searched)):
        if items:
            lines += ([""] if lines else []) + [f'<p class="zk-sources-title">{t(lang, title)}</p>', ""]
            lines += [line for i, s in enumerate(items) for line in _source_lines(s, i, lang, link)]
    return "\n".join(lines)


def _source_lines(s: Source, i: int, lang: Lang, link: Callable[[KBSource], str | None] | None) -> list[str]:
    if isinstance(s, WebSource):
        parts = [f"[{_md(_one_line(s.name(), 80))}]({s.url})"]
    else:
        assert isinstance(s, KBSource)
        parts = [f"**{_md(s.document)}**"]
        if s.page is not None:
            parts.append(t(lang, "page", page=s.page))
        if s.heading:
            parts.append(_md(" › ".join(s.heading)))
        if s.score is not None:
            parts.append(f"{t(lang, 'score')} {s.score:.2f}")
        url = link(s) if link else None
        if url:
            parts.append(f"[{t(lang, 'download')}]({url})")
    lines = [f"{s.index or i + 1}. " + " · ".join(parts)]
    if s.snippet:
        lines.append(f"   > {_md(_one_line(s.snippet))}")
    return lines


def tool_trace(call: dict[str, Any], lang: Lang) -> str:
    """The body of one agent step: the arguments and (once known) the result."""
    args = json.dumps(call.get("arguments", {}), ensure_ascii=False, indent=1)
    body = f"```json\n{args}\n```"
    if call.get("result") is not None:
        result = call["result"]
        text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, indent=1)
        body += f"\n\n**{t(lang, 'tool_result')}**\n\n```\n{_one_line(text, 2000)}\n```"
    return body


def status_text(doc: DocInfo, lang: Lang) -> str:
    label = t(lang, f"status_{doc.status}") if doc.status in ("ok", "failed", "warning") else doc.status
    return f"{label}: {doc.error}" if doc.error else label


def doc_type(doc: DocInfo) -> str:
    suffix = PurePosixPath(doc.path).suffix.lower().lstrip(".")
    return suffix or doc.loader


def documents_table(docs: list[DocInfo], lang: Lang) -> tuple[list[str], list[list[Any]]]:
    headers = [t(lang, k) for k in ("col_id", "col_name", "col_type", "col_chunks", "col_status", "col_added")]
    rows = [[d.id, d.path, doc_type(d), d.chunk_count, status_text(d, lang), when(d.added)] for d in docs]
    return headers, rows


def upload_table(outcomes: list[Outcome], lang: Lang) -> tuple[list[str], list[list[Any]]]:
    """Per-file results of an upload; a file already in with the same content says "unchanged", not "ok"."""
    headers = [t(lang, k) for k in ("col_name", "col_chunks", "col_result")]
    rows: list[list[Any]] = []
    for o in outcomes:
        status = t(lang, "status_unchanged") if o.kind == "unchanged" else status_text(o.doc, lang)
        rows.append([o.doc.path, o.doc.chunk_count, status])
    return headers, rows


def chunks_table(chunks: list[dict[str, Any]], lang: Lang) -> tuple[list[str], list[list[Any]]]:
    headers = ["#", t(lang, "col_page"), t(lang, "col_heading"), t(lang, "col_text")]
    rows = []
    for c in chunks:
        meta = c.get("metadata") or {}
        heading = meta.get("heading") or []
        rows.append([c.get("ordinal"), meta.get("page") or "",
                     " › ".join(heading) if isinstance(heading, list) else str(heading), c.get("text", "")])
    return headers, rows


def kb_info(kb: KBInfo, lang: Lang) -> str:
    info = t(lang, "kb_info", name=_md(kb.name), desc=_md(kb.description) or "—", embedder=kb.embedder,
             size=kb.chunk_size, overlap=kb.chunk_overlap, docs=kb.documents, chunks=kb.chunks)
    return info  # the embedding's progress has its own line (embedding_markdown)


def embedding_markdown(kb: KBInfo, lang: Lang) -> str:
    """The two phases of a base's files: "searchable (full text)" at once, then "embedding 1,240 / 5,000
    chunks, ~4 min left" until every chunk has its vector ("embedded")."""
    if not kb.chunks:
        return ""
    eta = ""
    if kb.embedding_eta_s is not None:
        minutes = kb.embedding_eta_s / 60
        eta = t(lang, "phase_eta", minutes=max(1, round(minutes))) if minutes >= 1 else t(lang, "phase_eta_soon")
    if kb.rebuilding is not None:
        second = t(lang, "phase_rebuilding", embedder=_md(kb.rebuilding), done=f"{kb.rebuilt_chunks:,}",
                   total=f"{kb.chunks:,}", eta=eta)
    elif kb.embedded_chunks >= kb.chunks:
        second = t(lang, "phase_embedded")
    else:
        second = t(lang, "phase_embedding", done=f"{kb.embedded_chunks:,}", total=f"{kb.chunks:,}", eta=eta)
    return f"{t(lang, 'phase_searchable')} · {second}"


def hits_markdown(hits: list[Hit], lang: Lang) -> str:
    if not hits:
        return t(lang, "no_hits")
    lines = []
    for i, h in enumerate(hits, 1):
        parts = [f"**{_md(h.document)}**"]
        if h.page is not None:
            parts.append(t(lang, "page", page=h.page))
        if h.heading:
            parts.append(_md(" › ".join(h.heading)))
        parts.append(f"{t(lang, 'score')} {h.score:.3f}")
        lines.append(f"{i}. " + " · ".join(parts))
        lines.append(f"   > {_md(_one_line(h.text, 300))}")
    return "\n".join(lines)


def status_markdown(stats: dict[str, Any] | None, error: str | None, kbs: list[KBInfo],
                    version: str, settings: Any, lang: Lang, sizes: dict[str, int] | None = None) -> str:
    """The status page: model and its settings, load, totals, knowledge bases and version."""
    rows: list[tuple[str, Any]] = []
    if stats is not None:
        rows += [
            (t(lang, "st_model"), f"`{stats.get('model', '')}`"),
            (t(lang, "st_backend"), settings.llm_backend),
            (t(lang, "st_ctx"), stats.get("ctx", "")),
            (t(lang, "st_threads"), stats.get("threads", "")),
            (t(lang, "st_parallel"), stats.get("parallel", "")),
            (t(lang, "st_queue"), stats.get("queue_depth", 0)),
            (t(lang, "st_active"), stats.get("active", 0)),
            (t(lang, "st_requests"), stats.get("requests_total", 0)),
            (t(lang, "st_prompt_tokens"), stats.get("prompt_tokens_total", 0)),
            (t(lang, "st_completion_tokens"), stats.get("completion_tokens_total", 0)),
        ]
    rows += [
        (t(lang, "st_embedder"), f"`{settings.embedder}`"),
        (t(lang, "st_home"), f"`{settings.home}`"),
        (t(lang, "st_version"), f"zhiku {version}"),
    ]
    lines = [f"| {t(lang, 'st_item')} | {t(lang, 'st_value')} |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    if error:
        lines = [t(lang, "st_not_loaded", message=_md(error)), ""] + lines
    kb_lines = ["", f"**{t(lang, 'st_kbs')}**", ""]
    if kbs:
        sizes = sizes or {}
        kb_lines += [f"| {t(lang, 'kb_name')} | {t(lang, 'embedder')} | {t(lang, 'documents')} | "
                     f"{t(lang, 'chunks')} | {t(lang, 'st_size')} |", "|---|---|---:|---:|---:|"]
        kb_lines += [f"| {_md(k.name)} | `{k.embedder}` | {k.documents} | {k.chunks} | "
                     f"{size_text(sizes.get(k.name, 0))} |" for k in kbs]
    else:
        kb_lines.append(t(lang, "none"))
    return "\n".join(lines + kb_lines)
