"""The search-provider protocol: a query in, a short list of titled, linked snippets out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from zhiku.errors import Unavailable


@dataclass
class SearchResult:
    title: str
    url: str
    snippet: str


class SearchError(Unavailable):
    """The provider could not be reached or answered badly; the message tells the user what to do."""

    code = "search_unavailable"


@runtime_checkable
class SearchProvider(Protocol):
    name: str

    async def search(self, query: str, max_results: int = 5) -> list[SearchResult]:
        """Results, best first. Raises SearchError (never hangs: every call has a bounded timeout)."""
        ...
