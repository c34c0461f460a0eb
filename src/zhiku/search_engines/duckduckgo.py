"""DuckDuckGo through the `ddgs` package. Needs internet access."""

from __future__ import annotations

import asyncio
from typing import Any

from zhiku.search_engines.base import SearchError, SearchResult

NEEDS_INTERNET = ("DuckDuckGo search needs internet access, and it could not be reached ({reason}). "
                  "On an offline network run SearXNG and set search_engine = \"searxng\".")


class DuckDuckGoProvider:
    name = "duckduckgo"

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout

    def _search(self, query: str, max_results: int) -> list[dict[str, Any]]:
        from ddgs import DDGS

        return list(DDGS(timeout=max(1, int(self.timeout))).text(query, max_results=max_results) or [])

    async def search(self, query: str, max_results: int = 5) -> list[SearchResult]:
        try:
            # ddgs is synchronous: run it on a thread and stop waiting at the timeout (the thread, bounded
            # by ddgs' own timeout, finishes on its own).
            items = await asyncio.wait_for(asyncio.to_thread(self._search, query, max_results), self.timeout)
        except TimeoutError as e:
            raise SearchError(NEEDS_INTERNET.format(reason=f"no answer within {self.timeout:g} s")) from e
        except Exception as e:  # ddgs raises its own exception types for network failures and no results
            if type(e).__name__ == "DDGSException" and "no results" in str(e).lower():
                return []
            raise SearchError(NEEDS_INTERNET.format(reason=f"{type(e).__name__}: {e}"[:300])) from e
        return [SearchResult(str(i.get("title") or i.get("href", "")), str(i.get("href", "")), str(i.get("body", "")))
                for i in items if i.get("href")]
