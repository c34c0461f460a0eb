"""The links the HTTP API adds to what an answer cites: a knowledge-base source gets the download URL of its
original (the /api/kb route; the chat layer knows no HTTP route, the web UI links its own)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from zhiku.chat.sources import KBSource, Source

KB_PREFIX = "/api/kb"  # where server/api_kb.py's router lives


def download_url(kb_name: str, doc_id: int) -> str:
    """The link to a document's original file (api_kb's download route)."""
    return f"{KB_PREFIX}/{quote(kb_name, safe='')}/documents/{doc_id}/download"


def with_links(sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sources as the API returns them: each knowledge-base source gets its download `url`."""
    out = []
    for d in sources:
        s = Source.from_dict(d)
        if isinstance(s, KBSource) and s.document_id is not None:
            d = {**d, "url": download_url(s.kb, s.document_id)}
        out.append(d)
    return out
