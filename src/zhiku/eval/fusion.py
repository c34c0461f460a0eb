"""Choosing the hybrid fusion: BM25 and dense lists fetched once per question, fused offline by the
product's own `kb.search.rrf` under each candidate weight, and scored against both single lists.

The rule the default follows: on the *dev* half of every set, take the BM25 weight (dense weight 1) whose
worst margin over the better single mode (hit@5 and MRR@10, across sets) is largest; then report the
*test* half, which played no part in the choice. One weight for all sets, so it is not fitted to one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zhiku.config import Settings
from zhiku.eval.datasets import Dataset, Question
from zhiku.eval.metrics import mean_metrics, ranking_metrics
from zhiku.eval.retrieval import Progress, Workspace, ingest_config
from zhiku.eval.stats import mean_ci
from zhiku.kb import search as kb_search

KS = (1, 3, 5, 10)
JUDGED = ("hit@5", "mrr@10")


def _lists(settings: Settings, dataset: Dataset, questions: Sequence[Question], work_dir: Path | None,
           progress: Progress | None) -> list[tuple[Question, dict[int, str], list[Any], list[Any]]]:
    depth = kb_search.MIN_CANDIDATES
    ws = Workspace(settings, work_dir)
    try:
        ingested = ws.ensure(dataset, ingest_config(settings), progress)
        kb = ws.kb()
        chunk_doc: dict[int, str] = {}
        out = []
        scored = [q for q in questions if q.grades()]
        for n, q in enumerate(scored, 1):
            bm25 = kb.search(ingested.name, q.question, top_k=depth, score_threshold=0.0, mode="bm25")
            dense = kb.search(ingested.name, q.question, top_k=depth, score_threshold=0.0, mode="dense")
            for h in (*bm25, *dense):
                chunk_doc[h.chunk_id] = ingested.doc_to_corpus.get(h.document_id, "")
            out.append((q, chunk_doc, [(h.chunk_id, h.score) for h in bm25], [(h.chunk_id, h.score) for h in dense]))
            if progress:
                progress(f"lists {dataset.name}", n, len(scored))
    finally:
        ws.close()
    return out


def _score(ranked: list[tuple[int, float]], chunk_doc: dict[int, str], q: Question) -> dict[str, float]:
    return ranking_metrics([chunk_doc.get(c) or None for c, _ in ranked], q.grades(), [s for _, s in ranked], KS)


def evaluate_fusion(settings: Settings, sets: Sequence[tuple[Dataset, Sequence[Question]]], weights: Sequence[float],
                    work_dir: Path | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Per set: bm25, dense and hybrid at each BM25 weight (dense weight 1); hit@k, MRR@10, nDCG@10 with
    intervals for the judged metrics, and each weight's margin over the better single mode."""
    sets_out: dict[str, Any] = {}
    for dataset, questions in sets:
        lists = _lists(settings, dataset, questions, work_dir, progress)
        per: dict[str, list[dict[str, float]]] = {"bm25": [], "dense": []}
        for w in weights:
            per[f"hybrid bm25_weight={w:g}"] = []
        for q, chunk_doc, bm25, dense in lists:
            per["bm25"].append(_score(bm25[:10], chunk_doc, q))
            per["dense"].append(_score(dense[:10], chunk_doc, q))
            for w in weights:
                fused = kb_search.rrf([(w, bm25), (1.0, dense)], 10)
                per[f"hybrid bm25_weight={w:g}"].append(_score(fused, chunk_doc, q))
        modes: dict[str, Any] = {}
        for name, rows in per.items():
            summary = mean_metrics(rows)
            for key in JUDGED:
                _, lo, hi = mean_ci([r[key] for r in rows])
                summary[f"{key}_lo"], summary[f"{key}_hi"] = lo, hi
            modes[name] = summary
        best_single = {k: max(modes["bm25"][k], modes["dense"][k]) for k in JUDGED}
        for w in weights:
            m = modes[f"hybrid bm25_weight={w:g}"]
            m["margin"] = min(m[k] - best_single[k] for k in JUDGED)
        sets_out[dataset.name] = {"questions": len(lists), "modes": modes}
    worst = {w: min(s["modes"][f"hybrid bm25_weight={w:g}"]["margin"] for s in sets_out.values()) for w in weights}
    chosen = max(weights, key=lambda w: (worst[w], w == 1.0))
    return {"sets": sets_out, "weights": list(weights), "worst_margin": {f"{w:g}": v for w, v in worst.items()},
            "chosen_bm25_weight": chosen, "rrf_k": kb_search.RRF_K}
