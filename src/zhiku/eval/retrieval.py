"""Retrieval evaluation: ingest a dataset's corpus into a throw-away knowledge base, ask every question in
each search mode, and score the ranked chunks against the gold corpus items.

Each corpus item is written as its own small text file, so a chunk maps to exactly one corpus item through its
document id. The knowledge bases live in a private ZHIKU_HOME (a temporary folder, or `work_dir` to keep and
reuse them across runs, which saves the slow dense embedding when only search settings change).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zhiku.config import Settings
from zhiku.eval.datasets import Dataset, Question
from zhiku.eval.metrics import RANK_KS, mean_metrics, ranking_metrics
from zhiku.kb.types import DocInfo, Hit, KBNotFound

if TYPE_CHECKING:
    from zhiku.kb.service import KBService

Progress = Callable[[str, int, int], None]  # (what, done, total)
MODES = ("bm25", "dense", "hybrid")


@dataclass(frozen=True)
class IngestConfig:
    """What changes the stored chunks (and so needs a fresh knowledge base)."""

    embedder: str
    chunk_size: int
    chunk_overlap: int
    title_enhance: bool = False
    titles: bool = False  # write "title\n\ntext" instead of the text alone

    def kb_name(self, dataset: Dataset) -> str:
        key = json.dumps([dataset.fingerprint(), asdict(self)], sort_keys=True)
        return "eval-" + hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SearchConfig:
    """What only changes search: no re-ingestion needed."""

    bm25_weight: float = 1.0
    dense_weight: float = 1.0


@dataclass
class Ingested:
    name: str
    doc_to_corpus: dict[int, str]
    documents: int
    chunks: int
    failed: list[str] = field(default_factory=list)
    skipped_empty: int = 0
    seconds: float = 0.0
    reused: bool = False


def ingest_config(settings: Settings, **overrides: Any) -> IngestConfig:
    base: dict[str, Any] = {"embedder": settings.embedder, "chunk_size": settings.chunk_size,
            "chunk_overlap": settings.chunk_overlap, "title_enhance": settings.title_enhance, "titles": False}
    base.update({k: v for k, v in overrides.items() if v is not None})
    if base["chunk_overlap"] >= base["chunk_size"]:  # a grid over chunk_size alone must not make overlap invalid
        base["chunk_overlap"] = base["chunk_size"] // 5
    return IngestConfig(**base)


class Workspace:
    """Knowledge-base services over a private home; one service per search-weight setting."""

    def __init__(self, settings: Settings, work_dir: Path | None = None) -> None:
        self._tmp = None if work_dir else tempfile.TemporaryDirectory(prefix="zhiku-eval-")
        self.home = Path(work_dir or self._tmp.name)  # type: ignore[union-attr]
        self.home.mkdir(parents=True, exist_ok=True)
        self.keep = work_dir is not None
        self.settings = settings.model_copy(update={"home": self.home, "models_dir": settings.models_path})
        self._services: dict[SearchConfig, KBService] = {}

    def kb(self, search: SearchConfig | None = None) -> KBService:
        from zhiku.kb.service import KBService

        search = search or SearchConfig(self.settings.bm25_weight, self.settings.dense_weight)
        if search not in self._services:
            self._services[search] = KBService(self.settings.model_copy(update=asdict(search)))
        return self._services[search]

    def ensure(self, dataset: Dataset, config: IngestConfig, progress: Progress | None = None) -> Ingested:
        """The knowledge base holding `dataset`'s corpus under `config`: reused when complete, completed when
        an earlier ingestion was stopped part-way (the items already stored are kept), else built."""
        kb = self.kb()
        name = config.kb_name(dataset)
        items = [(i, c) for i, c in enumerate(dataset.corpus) if (c.text or c.title).strip()]
        skipped = len(dataset.corpus) - len(items)  # nothing to store
        try:
            kb.get(name)
            docs = kb.documents(name)
            if len(docs) == len(items):
                return self._ingested(name, dataset, docs, skipped, 0.0, reused=True)
            stored = {Path(d.path).stem for d in docs}
            items = [(i, c) for i, c in items if f"c{i:07d}" not in stored]
        except KBNotFound:
            kb.create(name, description=f"zhiku eval: {dataset.name}", embedder=config.embedder,
                      chunk_size=config.chunk_size, chunk_overlap=config.chunk_overlap,
                      title_enhance=config.title_enhance, ttl_seconds=None if self.keep else 7 * 86400)
        src = self.home / "eval-sources" / name
        src.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, c in items:
            text = f"{c.title}\n\n{c.text}" if config.titles and c.title else (c.text or c.title)
            path = src / f"c{i:07d}.txt"
            path.write_text(text, encoding="utf-8")
            paths.append(path)
        started = time.perf_counter()
        # one call: the pipeline fills embedder batches across files and commits each file on its own
        docs = kb.add_files(name, paths, progress=progress)
        seconds = time.perf_counter() - started
        shutil.rmtree(src, ignore_errors=True)  # the knowledge base keeps its own copy of each original
        return self._ingested(name, dataset, kb.documents(name) or docs, skipped, seconds)

    def _ingested(self, name: str, dataset: Dataset, docs: list[DocInfo], skipped: int, seconds: float,
                  reused: bool = False) -> Ingested:
        mapping: dict[int, str] = {}
        failed: list[str] = []
        for d in docs:
            stem = Path(d.path).stem
            if d.status == "failed" or not stem.startswith("c") or not stem[1:].isdigit():
                failed.append(f"{d.path}: {d.error}")
                continue
            mapping[d.id] = dataset.corpus[int(stem[1:])].id
        chunks = sum(d.chunk_count for d in docs)
        return Ingested(name, mapping, len(docs), chunks, failed, skipped, seconds, reused)

    def close(self) -> None:
        for service in self._services.values():
            service.close()
        self._services.clear()
        if self._tmp is not None:
            self._tmp.cleanup()


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def score_hits(hits: Sequence[Hit], doc_to_corpus: dict[int, str], question: Question,
               ks: Sequence[int] = RANK_KS) -> dict[str, float]:
    """Ranking metrics of one search result (hits re-sorted by score, stable, in case of rounding)."""
    ordered = sorted(hits, key=lambda h: -h.score)
    return ranking_metrics([doc_to_corpus.get(h.document_id) for h in ordered], question.grades(),
                           [h.score for h in ordered], ks)


def evaluate(kb: KBService, ingested: Ingested, questions: Sequence[Question], modes: Iterable[str] = MODES,
             ks: Sequence[int] = RANK_KS, progress: Progress | None = None) -> dict[str, dict[str, float]]:
    """Mean metrics and latency per search mode, over the questions that have gold ids."""
    modes = list(modes)
    scored = [q for q in questions if q.grades()]
    depth = max(ks)
    rows: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    latency: dict[str, list[float]] = {m: [] for m in modes}
    for n, q in enumerate(scored, 1):
        for mode in modes:
            t0 = time.perf_counter()
            hits = kb.search(ingested.name, q.question, top_k=depth, score_threshold=0.0, mode=mode)
            latency[mode].append((time.perf_counter() - t0) * 1000)
            rows[mode].append(score_hits(hits, ingested.doc_to_corpus, q, ks))
        if progress:
            progress("search", n, len(scored))
    out: dict[str, dict[str, float]] = {}
    for mode in modes:
        summary = mean_metrics(rows[mode])
        summary["latency_ms_median"] = statistics.median(latency[mode]) if latency[mode] else 0.0
        summary["latency_ms_p95"] = _percentile(latency[mode], 0.95)
        summary["questions"] = float(len(rows[mode]))
        out[mode] = summary
    return out


def run_retrieval(settings: Settings, dataset: Dataset, questions: Sequence[Question],
                  config: IngestConfig | None = None, modes: Iterable[str] = MODES,
                  ks: Sequence[int] = RANK_KS, work_dir: Path | None = None,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Ingest (or reuse) and evaluate; returns {"modes": {...}, "ingest": {...}, "config": {...}}."""
    config = config or ingest_config(settings)
    ws = Workspace(settings, work_dir)
    try:
        ingested = ws.ensure(dataset, config, progress)
        modes_out = evaluate(ws.kb(), ingested, questions, modes, ks, progress)
    finally:
        ws.close()
    skipped = sum(1 for q in questions if not q.grades())
    return {"modes": modes_out, "ingest": ingest_summary(ingested), "config": asdict(config),
            "questions": len(questions), "questions_without_gold": skipped,
            "search": asdict(SearchConfig(settings.bm25_weight, settings.dense_weight))}


def ingest_summary(ingested: Ingested) -> dict[str, Any]:
    return {"documents": ingested.documents, "chunks": ingested.chunks, "failed": ingested.failed[:20],
            "failed_count": len(ingested.failed), "skipped_empty": ingested.skipped_empty,
            "seconds": round(ingested.seconds, 2), "reused": ingested.reused}
