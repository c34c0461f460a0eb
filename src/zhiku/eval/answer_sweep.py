"""`zhiku eval answers --grid top_k=3,5 prompt=default,short chunk_size=300,500`: every combination of the
answer levers, each scored by the whole answer evaluation, on the same questions.

Combinations that store the same chunks share one knowledge base (kept in `--work-dir`, or in one
temporary folder for the whole sweep), so only the first pays for the embedding.
"""

from __future__ import annotations

import dataclasses
import itertools
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zhiku.config import Settings
from zhiku.eval.answers import Options, Progress, run_answers
from zhiku.eval.datasets import Dataset, Question
from zhiku.eval.retrieval import MODES, ingest_config
from zhiku.eval.sweep import GridError, parse_grid

KEYS: dict[str, type] = {"top_k": int, "prompt": str, "mode": str, "max_tokens": int, "chunk_size": int,
                         "chunk_overlap": int, "bm25_weight": float, "dense_weight": float, "titles": bool}
SETTINGS_KEYS = ("chunk_size", "chunk_overlap", "bm25_weight", "dense_weight")
REPORTED = ("em", "f1", "contains", "refusal", "false_refusal", "rejection", "support_ok", "ttft_ms_median")


def _check(key: str, value: Any) -> None:
    if key == "mode" and value not in MODES:
        raise GridError(f"mode={value!r}: use {', '.join(MODES)}")


def parse_answer_grid(specs: Sequence[str]) -> dict[str, list[Any]]:
    """["top_k=3,5", "prompt=default,short"] -> {"top_k": [3, 5], "prompt": ["default", "short"]}."""
    return parse_grid(specs, KEYS, _check)


def run_answer_grid(settings: Settings, dataset: Dataset, questions: Sequence[Question], models: Sequence[str],
                    contexts: Sequence[str], options: Options, grid: dict[str, list[Any]],
                    work_dir: Path | None = None, seed: int = 0, progress: Progress | None = None) -> dict[str, Any]:
    """One row per (combination, model), best first by accuracy with the retrieved chunks (else gold)."""
    keys = list(grid)
    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="zhiku-answer-sweep-") as tmp:
        folder = work_dir or Path(tmp)
        for values in itertools.product(*(grid[k] for k in keys)):
            combo = dict(zip(keys, values, strict=True))
            run_settings = settings.model_copy(update={k: v for k, v in combo.items() if k in SETTINGS_KEYS})
            run_options = dataclasses.replace(options, **{k: v for k, v in combo.items()
                                                          if k in ("top_k", "prompt", "mode", "max_tokens")})
            config = ingest_config(run_settings, titles=combo.get("titles", False))
            result = run_answers(run_settings, dataset, questions, models, contexts, run_options, config, folder,
                                 seed, progress)
            runs.append({"combination": combo, **result})
            for model, summary in result["models"].items():
                row: dict[str, Any] = {**combo, "model": model}
                for context in contexts:
                    for metric in REPORTED:
                        if metric in summary.get(context, {}):
                            row[f"{context}.{metric}"] = summary[context][metric]
                row["targets_met"] = sum(t["met"] for t in summary["targets"].values())
                rows.append(row)
    key = "retrieved.contains" if "retrieved" in contexts else "gold.contains"
    rows.sort(key=lambda r: -(r.get(key) or 0.0))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return {"grid": grid, "metric": key, "rows": rows, "runs": runs}
