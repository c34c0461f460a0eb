"""What an answer cites, as one typed value: a passage of a knowledge-base document or a web page.

Sources travel as JSON (chat events, stored messages, API replies) in the shape `to_dict` gives: the
fields below plus `kind` ("kb" or "web"). Every consumer reads them back with `from_dict` and renders
them with the helpers here, so telling a web page from a document happens in one place. A KB source holds
no link: the interface that serves the original file (the /api routes, the web UI) builds the link.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from zhiku.kb.types import Hit
from zhiku.search_engines.base import SearchResult

SNIPPET_CHARS = 300
SourceKind = Literal["kb", "web"]
# What a source did for the answer (chat/citations.py): "cited" ([n] in the answer, and the passage holds
# the answer's content), "attributed" (not cited, but holds it), "searched" (in the prompt, not shown to
# support the answer: every source under a refusal). None: not judged (web results, older messages).
SourceRole = Literal["cited", "attributed", "searched"]
ROLES: tuple[str, ...] = ("cited", "attributed", "searched")


def _one_line(text: str, limit: int = SNIPPET_CHARS) -> str:
    return " ".join(text.split())[:limit]


@dataclass(kw_only=True)
class Source:
    """One cited source, numbered as in the prompt ([1], [2], ...)."""

    kind: ClassVar[SourceKind]
    index: int
    snippet: str = ""
    role: SourceRole | None = None
    support: float | None = None  # share of the answer's content the passage holds

    @property
    def supports(self) -> bool:
        """Shown as support for the answer: cited or attributed (or not judged at all)."""
        return self.role != "searched"

    def name(self) -> str:
        """What the source is called: the document's file name, or the page's title (else its URL)."""
        raise NotImplementedError

    def where(self, page: str = "p. {page}", sep: str = " > ") -> list[str]:
        """Where in the source the passage is (page, heading trail); empty for a web page."""
        return []

    def label(self, sep: str = " · ") -> str:
        """One line naming the source and the place in it: `handbook.pdf · p. 3 · Leave > Sick days`."""
        return sep.join(p for p in (self.name(), *self.where()) if p)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Source:
        """A source from its JSON; an untyped one (stored before `kind` existed) is a web page when it has a
        URL and no document."""
        kind = d.get("kind") or ("web" if d.get("url") and not d.get("document") else "kb")
        role = d.get("role") if d.get("role") in ROLES else None
        support = None if d.get("support") is None else float(d["support"])
        if kind == "web":
            return WebSource(index=int(d.get("index") or 0), snippet=str(d.get("snippet") or ""),
                             title=str(d.get("title") or ""), url=str(d.get("url") or ""),
                             engine=str(d.get("engine") or ""), role=role, support=support)
        heading = d.get("heading") or []
        return KBSource(index=int(d.get("index") or 0), snippet=str(d.get("snippet") or d.get("text") or ""),
                        role=role, support=support,
                        kb=str(d.get("kb") or ""), document=str(d.get("document") or ""),
                        document_id=d.get("document_id"), chunk_id=d.get("chunk_id"), page=d.get("page"),
                        heading=[str(h) for h in heading] if isinstance(heading, list) else [str(heading)],
                        score=None if d.get("score") is None else float(d["score"]),
                        text=str(d.get("text") or ""))


@dataclass(kw_only=True)
class KBSource(Source):
    """A chunk of a document in a knowledge base."""

    kind: ClassVar[SourceKind] = "kb"
    kb: str
    document: str
    document_id: int | None = None
    chunk_id: int | None = None
    page: int | None = None
    heading: list[str] = field(default_factory=list)
    score: float | None = None  # relevance in [0, 1]
    text: str = ""  # the whole passage, as the hit held it (Chatchat's docs show it; the snippet is one line)

    def name(self) -> str:
        return self.document

    def where(self, page: str = "p. {page}", sep: str = " > ") -> list[str]:
        parts = [page.format(page=self.page)] if self.page is not None else []
        return parts + ([sep.join(self.heading)] if self.heading else [])

    @classmethod
    def from_hit(cls, index: int, hit: Hit, kb_name: str) -> KBSource:
        return cls(index=index, kb=kb_name, document=hit.document, document_id=hit.document_id,
                   chunk_id=hit.chunk_id, page=hit.page, heading=list(hit.heading),
                   score=round(float(hit.score), 4), snippet=_one_line(hit.text), text=hit.text)


@dataclass(kw_only=True)
class WebSource(Source):
    """A page found by a search engine."""

    kind: ClassVar[SourceKind] = "web"
    url: str
    title: str = ""
    engine: str = ""

    def name(self) -> str:
        return self.title or self.url

    @classmethod
    def from_result(cls, index: int, r: SearchResult, engine: str) -> WebSource:
        return cls(index=index, title=r.title, url=r.url, snippet=_one_line(r.snippet), engine=engine)


def sources_from(items: Iterable[dict[str, Any]] | None) -> list[Source]:
    return [Source.from_dict(d) for d in items or [] if isinstance(d, dict)]


def by_role(sources: Iterable[Source]) -> tuple[list[Source], list[Source]]:
    """(supporting, searched): the sources shown as support for the answer, and those only searched (in the
    prompt but not shown to support it; all of them under a refusal). Unjudged sources count as support."""
    items = list(sources)
    return [s for s in items if s.supports], [s for s in items if not s.supports]
