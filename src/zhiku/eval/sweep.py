"""Sweeps: `--grid chunk_size=300,500,800 top_k=3,5` runs every combination and ranks them.

Combinations that share the stored chunks (same embedder, chunk size, overlap, titles) share one ingestion;
search weights only change the search; top_k only changes the cut-off, so it is read off one ranking.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from zhiku.config import Settings
from zhiku.eval.datasets import Dataset, Question
from zhiku.eval.metrics import RANK_KS
from zhiku.eval.retrieval import (
    MODES,
    Progress,
    SearchConfig,
    Workspace,
    evaluate,
    ingest_config,
    ingest_summary,
)

INGEST_KEYS = {"embedder": str, "chunk_size": int, "chunk_overlap": int, "title_enhance": bool, "titles": bool}
SEARCH_KEYS = {"bm25_weight": float, "dense_weight": float}
CUTOFF_KEYS = {"top_k": int}
KEYS = {**INGEST_KEYS, **SEARCH_KEYS, **CUTOFF_KEYS}


class GridError(ValueError):
    pass


def typed(key: str, raw: str, kind: type) -> Any:
    """One grid value as its key's type (bools as true/false, 1/0, yes/no)."""
    try:
        if kind is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1", "yes")
        return kind(raw)
    except ValueError:
        raise GridError(f"{key}={raw!r}: expected {kind.__name__}") from None


def parse_grid(specs: Sequence[str], keys: dict[str, type] | None = None,
               check: Callable[[str, Any], None] | None = None) -> dict[str, list[Any]]:
    """["chunk_size=300,500", "top_k=3,5"] -> {"chunk_size": [300, 500], "top_k": [3, 5]}; `keys` are the
    allowed keys and their types (default: the retrieval sweep's), `check` may refuse a value."""
    keys = KEYS if keys is None else keys
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        for part in spec.split():
            key, sep, values = part.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or not values:
                raise GridError(f"{part!r}: write key=v1,v2")
            if key not in keys:
                raise GridError(f"unknown grid key {key!r}; use {', '.join(sorted(keys))}")
            grid[key] = [typed(key, v.strip(), keys[key]) for v in values.split(",") if v.strip()]
            for v in grid[key]:
                if check is not None:
                    check(key, v)
    return grid


def combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def run_sweep(settings: Settings, dataset: Dataset, questions: Sequence[Question], grid: dict[str, list[Any]],
              modes: Sequence[str] = MODES, metric: str = "hit@top_k", work_dir: Path | None = None,
              progress: Progress | None = None) -> dict[str, Any]:
    """Evaluate every combination x mode; rows ranked best first by `metric` ("hit@top_k" = hit at the row's
    own top_k, the chance the gold passage reaches the prompt)."""
    top_ks = grid.get("top_k") or [settings.top_k]
    ks = sorted(set(RANK_KS) | set(top_ks))
    ingest_grid = {k: v for k, v in grid.items() if k in INGEST_KEYS}
    search_grid = {k: v for k, v in grid.items() if k in SEARCH_KEYS}
    default_search = SearchConfig(settings.bm25_weight, settings.dense_weight)
    rows: list[dict[str, Any]] = []
    ingests: list[dict[str, Any]] = []
    ws = Workspace(settings, work_dir)
    try:
        for ingest_params in combinations(ingest_grid):
            config = ingest_config(settings, **ingest_params)
            ingested = ws.ensure(dataset, config, progress)
            ingests.append({**asdict(config), **ingest_summary(ingested)})
            for s, search_params in enumerate(combinations(search_grid)):
                search = SearchConfig(**{**asdict(default_search), **search_params})
                # bm25 and dense ignore the fusion weights: measure them once per ingestion
                run_modes = [m for m in modes if s == 0 or m == "hybrid"]
                result = evaluate(ws.kb(search), ingested, questions, run_modes, ks, progress)
                for mode, m in result.items():
                    for top_k in top_ks:
                        row = {**asdict(config), **asdict(search), "top_k": top_k, "mode": mode,
                               "hit@top_k": m[f"hit@{top_k}"], "recall@top_k": m[f"recall@{top_k}"], **m}
                        if mode != "hybrid":
                            row.update(bm25_weight=None, dense_weight=None)
                        rows.append(row)
    finally:
        ws.close()
    if rows and metric not in rows[0]:
        raise GridError(f"unknown metric {metric!r}; use one of {', '.join(k for k in rows[0] if '@' in k)}")
    rows.sort(key=lambda r: (-r[metric], r["latency_ms_median"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return {"grid": grid, "metric": metric, "rows": rows, "ingests": ingests}
