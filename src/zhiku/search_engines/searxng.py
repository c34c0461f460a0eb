"""SearXNG through its JSON API: self-hosted, so it works on an offline intranet."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from zhiku.search_engines.base import SearchError, SearchResult


class SearxngProvider:
    name = "searxng"

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    async def search(self, query: str, max_results: int = 5) -> list[SearchResult]:
        url = self.base_url + "/search"
        try:
            # httpx's timeout bounds each phase; wait_for bounds the whole call (slow-drip responses).
            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=True) as client:
                response = await asyncio.wait_for(
                    client.get(url, params={"q": query, "format": "json"},
                               headers={"Accept": "application/json"}),
                    self.timeout)
        except (TimeoutError, httpx.TimeoutException) as e:
            raise SearchError(f"SearXNG at {self.base_url} did not answer within {self.timeout:g} s; "
                              "check that it is running (setting searxng_url)") from e
        except httpx.HTTPError as e:
            raise SearchError(f"SearXNG at {self.base_url} is unreachable ({type(e).__name__}: {e}); "
                              "check that it is running and that searxng_url points at it") from e
        if response.status_code == 403:
            raise SearchError(f"SearXNG at {self.base_url} refused JSON output: add 'json' to "
                              "search.formats in its settings.yml")
        if response.status_code >= 400:
            raise SearchError(f"SearXNG at {self.base_url} answered HTTP {response.status_code}")
        try:
            data: Any = response.json()
            items = data["results"]
        except (ValueError, KeyError, TypeError) as e:
            raise SearchError(f"SearXNG at {self.base_url} did not return its JSON format") from e
        results: list[SearchResult] = []
        for item in items:
            if isinstance(item, dict) and item.get("url"):
                results.append(SearchResult(str(item.get("title") or item["url"]), str(item["url"]),
                                            str(item.get("content") or "")))
            if len(results) >= max_results:
                break
        return results
