"""zhiku ask: one question in any mode, streamed to the terminal with its sources.

Runs in this process (loads the model and knowledge bases itself) or, with --url, against a running
zhiku server through its /api/chat stream.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from zhiku.chat.sources import KBSource, WebSource, by_role, sources_from
from zhiku.chat.types import MODES, ChatEvent, ChatRequest, ChatResult
from zhiku.commands.common import cli_settings, console, err_console, fail


def _mode(mode: str | None, kb: str | None, files: list[Path]) -> str:
    if mode is None:
        return "file" if files else "kb" if kb else "llm"
    if mode not in MODES:
        fail(f"unknown mode '{mode}'; choose one of {', '.join(MODES)}")
    return mode


def _print_event(event: ChatEvent, show: bool) -> None:
    """Stream an event to the terminal: answer text to stdout, the agent's trace to stderr."""
    if not show:
        return
    d = event.data
    if event.type == "delta":
        sys.stdout.write(d["text"])
        sys.stdout.flush()
    elif event.type == "tool_call":
        err_console.print(f"[dim]→ {d['name']}({json.dumps(d.get('arguments', {}), ensure_ascii=False)})"
                          + ("" if d.get("valid", True) else f" [red]{d.get('error', '')}[/]") + "[/]",
                          highlight=False)
    elif event.type == "tool_result":
        err_console.print(f"[dim]← {str(d.get('result', ''))[:300]}[/]", highlight=False)
    elif event.type == "done":
        sys.stdout.write("\n")


def _print_sources(sources: list[dict[str, Any]]) -> None:
    supporting, searched = by_role(sources_from(sources))
    for title, items in (("Sources", supporting), ("Searched, not used for the answer", searched)):
        if not items:
            continue
        console.print(f"\n[bold]{title}[/]", highlight=False)
        for s in items:
            line = f"[{s.index}] " + (f"{s.title} — {s.url}" if isinstance(s, WebSource) else s.label())
            if isinstance(s, KBSource) and s.score is not None:
                line += f"  (score {s.score:.2f})"
            if s.role:
                line += f"  {s.role}"
            console.print(line, highlight=False, markup=False)


async def _local(request: ChatRequest, files: list[Path], model: str | None, show: bool) -> ChatResult:
    from zhiku.services import Services

    services = Services(cli_settings(model=model))
    try:
        if files:
            up = await asyncio.to_thread(services.chat.upload_files, [(p.name, p.read_bytes()) for p in files],
                                         request.conversation_id)
            for problem in up["errors"]:
                err_console.print(f"[yellow]{problem['filename']}: {problem['error']}[/]")
            request = request.model_copy(update={"conversation_id": up["conversation_id"]})
        result = ChatResult()
        async for event in services.chat.stream(request):
            _print_event(event, show)
            result.add(event)
        return result
    finally:
        services.close()


def _sse_events(lines: Iterator[str]) -> Iterator[ChatEvent]:
    for line in lines:
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        yield ChatEvent.from_json(payload)


def _http_error(r: Any) -> str:
    """The message of the server's error body (OpenAI's shape), else the start of the reply."""
    try:
        return f"HTTP {r.status_code}: {r.json()['error']['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {r.status_code}: {r.text[:300]}"


def _remote(url: str, api_key: str | None, request: ChatRequest, files: list[Path], show: bool) -> ChatResult:
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    base = url.rstrip("/")
    try:
        with httpx.Client(timeout=httpx.Timeout(30.0, read=600.0), headers=headers) as client:
            if files:
                r = client.post(base + "/api/chat/files",
                                files=[("files", (p.name, p.read_bytes())) for p in files],
                                data={"conversation_id": request.conversation_id} if request.conversation_id else {})
                if r.status_code >= 400:
                    fail(f"upload failed: {_http_error(r)}")
                request = request.model_copy(update={"conversation_id": r.json()["conversation_id"]})
            body = request.model_dump(exclude_none=True)
            result = ChatResult()
            with client.stream("POST", f"{base}/api/chat/{request.mode}", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    fail(_http_error(response))
                for event in _sse_events(response.iter_lines()):
                    _print_event(event, show)
                    result.add(event)
            return result
    except httpx.HTTPError as e:
        fail(f"cannot reach {url}: {e}")


def ask(
    question: str = typer.Argument(..., help="the question"),
    kb: str = typer.Option(None, "--kb", "-k", help="knowledge base to answer from (implies --mode kb)"),
    mode: str = typer.Option(None, "--mode", help="llm | kb | file | search | agent"),
    file: list[Path] = typer.Option(None, "--file", "-f", exists=True, dir_okay=False,
                                    help="a file to ask about (file chat; repeatable)"),
    engine: str = typer.Option(None, "--engine", help="search engine: searxng | duckduckgo"),
    model: str = typer.Option(None, "--model", "-m", help="model pack or .gguf (in-process) / model id (--url)"),
    prompt: str = typer.Option(None, "--prompt", help="prompt template name (see prompts.toml)"),
    temperature: float = typer.Option(None, "--temperature", "-t"),
    max_tokens: int = typer.Option(None, "--max-tokens"),
    top_k: int = typer.Option(None, "--top-k"),
    score_threshold: float = typer.Option(None, "--score-threshold"),
    conversation: str = typer.Option(None, "--conversation", "-c", help="continue this conversation"),
    save: bool = typer.Option(True, "--save/--no-save", help="store the question and answer"),
    url: str = typer.Option(None, "--url", help="ask a running zhiku server, e.g. http://127.0.0.1:8000"),
    api_key: str = typer.Option(None, "--api-key", help="API key for --url (default: the api_key setting, "
                                 "e.g. $ZHIKU_API_KEY)"),
    sources: bool = typer.Option(True, "--sources/--no-sources", help="print the cited sources"),
    as_json: bool = typer.Option(False, "--json", help="print the whole answer as one JSON object at the end"),
) -> None:
    """Ask a question: LLM chat, a knowledge base (--kb), files (--file), web search or the agent."""
    files = list(file or [])
    chosen = _mode(mode, kb, files)
    try:
        request = ChatRequest.model_validate({
            "query": question, "mode": chosen, "kb": kb, "search_engine": engine, "prompt_name": prompt,
            "temperature": temperature, "max_tokens": max_tokens, "top_k": top_k,
            "score_threshold": score_threshold, "conversation_id": conversation, "save": save,
            "model": model if url else None})
    except ValidationError as e:
        fail(f"invalid request: {e.errors()[0].get('msg')}")
    if url:
        result = _remote(url, api_key or cli_settings().api_key, request, files, not as_json)
    else:
        result = asyncio.run(_local(request, files, model, not as_json))
    if result.error is not None:
        fail(result.error)
    if as_json:
        console.print_json(result.model_dump_json())
    elif sources:
        _print_sources(result.sources)
