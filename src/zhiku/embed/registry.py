"""Embedder specs -> embedders, one instance per spec per process.

A spec is what the user writes (`e5-small`, `use-m3`, `st:<folder>`, `gguf:<file or model pack>`,
`openai:<model>`). Its canonical form, `embedder_id(spec)`, is recorded on each knowledge base: it names
the same model on every run (paths made absolute) and `get_embedder(kb.embedder, settings)` rebuilds it.
"""

from __future__ import annotations

import threading
from pathlib import Path

from zhiku.config import Settings
from zhiku.embed.base import Embedder, EmbedderError

SIMPLE = ("e5-small", "use-m3")
PREFIXED = ("st", "gguf", "openai")
USAGE = "use e5-small, use-m3, st:<folder>, gguf:<file>, openai:<model>"

_cache: dict[tuple[object, ...], Embedder] = {}
_cache_lock = threading.Lock()


def parse_spec(spec: str) -> tuple[str, str]:
    """('e5-small', '') | ('use-m3', '') | ('st' | 'gguf' | 'openai', argument); EmbedderError otherwise."""
    text = (spec or "").strip()
    if text in SIMPLE:
        return text, ""
    kind, sep, arg = text.partition(":")
    if sep and kind in PREFIXED:
        if not arg.strip():
            raise EmbedderError(f"embedder '{spec}' needs a value after '{kind}:': {USAGE}", kind="invalid_request")
        return kind, arg.strip()
    raise EmbedderError(f"unknown embedder '{spec}': {USAGE}", kind="invalid_request")


def _gguf_is_path(arg: str) -> bool:
    from zhiku import packs

    return packs.is_path_like(arg) or Path(arg).expanduser().is_file()


def embedder_id(spec: str) -> str:
    """The stable identifier stored on a knowledge base; never loads a model."""
    kind, arg = parse_spec(spec)
    if kind in SIMPLE:
        return kind
    if kind == "st" or (kind == "gguf" and _gguf_is_path(arg)):
        return f"{kind}:{Path(arg).expanduser().resolve()}"
    return f"{kind}:{arg}"  # a model pack name or an upstream's model name is already stable


def _build(eid: str, settings: Settings) -> Embedder:
    kind, arg = parse_spec(eid)
    threads = settings.embed_threads
    if kind == "e5-small":
        from zhiku.embed.e5 import E5Embedder

        return E5Embedder(threads=threads)
    if kind == "use-m3":
        from zhiku.embed.use_m3 import USEEmbedder

        return USEEmbedder(threads=threads)
    if kind == "st":
        from zhiku.embed.sentence_transformers import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(Path(arg), threads=threads)
    if kind == "gguf":
        from zhiku import packs
        from zhiku.embed.llama_cpp import LlamaCppEmbedder
        from zhiku.errors import ModelError

        try:
            path = Path(arg) if _gguf_is_path(arg) else packs.resolve(settings.models_path, arg)
        except ModelError as exc:
            raise EmbedderError(f"embedder '{eid}': {exc}") from exc
        return LlamaCppEmbedder(path, eid, threads=threads)
    from zhiku.embed.openai_compat import OpenAIEmbedder

    return OpenAIEmbedder(arg, base_url=settings.embed_base_url or settings.upstream_base_url,
                          api_key=settings.embed_api_key or settings.upstream_api_key,
                          timeout=settings.upstream_timeout)


def _cache_key(eid: str, settings: Settings) -> tuple[object, ...]:
    # Settings that change what an instance does; everything else may differ between callers.
    key: tuple[object, ...] = (eid, settings.embed_threads)
    if eid.startswith("openai:"):
        key += (settings.embed_base_url or settings.upstream_base_url,
                settings.embed_api_key or settings.upstream_api_key)
    elif eid.startswith("gguf:"):
        key += (str(settings.models_path),)
    return key


def get_embedder(spec: str, settings: Settings) -> Embedder:
    """The process-wide embedder for `spec` (built cheaply; weights load on first use). Thread-safe."""
    eid = embedder_id(spec)
    key = _cache_key(eid, settings)
    with _cache_lock:
        emb = _cache.get(key)
        if emb is None:
            emb = _cache[key] = _build(eid, settings)
        return emb


def clear_cache() -> None:
    """Close and forget every cached embedder (tests, shutdown)."""
    with _cache_lock:
        items = list(_cache.values())
        _cache.clear()
    for emb in items:
        close = getattr(emb, "close", None)
        if callable(close):
            close()
