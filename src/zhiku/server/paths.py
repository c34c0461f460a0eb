"""Which part of the server a request path belongs to, judged on the normalised path (`//v1/./x`, `/API`)
as a browser or a proxy may send it: API keys, the web UI's mount and the error envelope all ask here."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

from zhiku.server.chatchat import PREFIXES as CHATCHAT_PREFIXES


def under(path: str, prefixes: Iterable[str]) -> bool:
    """True when the path is one of `prefixes` or below one."""
    norm = posixpath.normpath("/" + path.lstrip("/")).lower()
    return any(norm == p or norm.startswith(p + "/") for p in prefixes)


def is_chatchat(path: str) -> bool:
    """A path of the Langchain-Chatchat 0.2 API, whose clients read errors as {"code", "msg"}."""
    return under(path, CHATCHAT_PREFIXES)
