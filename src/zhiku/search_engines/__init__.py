"""Web search providers for search-engine QA: SearXNG (self-hosted JSON API) and DuckDuckGo (needs internet)."""

from __future__ import annotations

from zhiku.config import Settings
from zhiku.search_engines.base import SearchError, SearchProvider, SearchResult

PROVIDERS = ("searxng", "duckduckgo")

__all__ = ["PROVIDERS", "SearchError", "SearchProvider", "SearchResult", "get_provider"]


def get_provider(settings: Settings, name: str | None = None) -> SearchProvider:
    name = name or settings.search_engine
    if name == "searxng":
        from zhiku.search_engines.searxng import SearxngProvider

        return SearxngProvider(settings.searxng_url, settings.search_timeout)
    if name == "duckduckgo":
        from zhiku.search_engines.duckduckgo import DuckDuckGoProvider

        return DuckDuckGoProvider(settings.search_timeout)
    raise SearchError(f"unknown search engine '{name}'; choose one of {', '.join(PROVIDERS)}",
                      kind="invalid_request", code="unknown_search_engine")
