"""The README's answer table from run logs named ``<pipeline>-<set>-<kind>.jsonl`` (`zhiku eval table`).

One row per pipeline, set, question kind and context, each rate with its 95 % interval (summarise), the
median and 90th-percentile answer time and the median prompt; then the issue's targets for the default
pipeline and its median answer time against the baseline's on the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zhiku.eval.answer_summary import Check, summarise
from zhiku.eval.report import fmt, markdown_table, with_ci
from zhiku.eval.rescore import NEGATIVE, rescore

SET_NAMES = {"squad12": "SQuAD", "cmrc": "CMRC 2018", "zh_int": "RGB zh_int"}
COLUMNS = ("right", "parts_found", "false_refusal", "rejection", "cite_ok")
HEADER = ["set", "pipeline", "kind", "context", "n", "right", "parts found", "false refusals", "rejection",
          "cites a passage holding it", "median s", "p90 s", "prompt tokens"]


def read(log: Path) -> tuple[str, str, str, list[dict[str, Any]]]:
    """(pipeline, set, kind, rows judged by this version's scorer) of one log."""
    pipeline, rest = log.stem.split("-", 1)
    dataset, kind = rest.rsplit("-", 1)
    for hyphenated in ("two-part", "multi-part"):
        if rest.endswith(f"-{hyphenated}"):
            dataset, kind = rest[:-len(hyphenated) - 1], hyphenated
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    return pipeline, dataset, kind, [{**r, **rescore(r)} for r in rows]


def _complete(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Only questions answered in every context of the log (a run stopped mid-question)."""
    contexts = {r["context"] for r in rows}
    have: dict[str, set[str]] = {}
    for r in rows:
        have.setdefault(r["id"], set()).add(r["context"])
    return [r for r in rows if have[r["id"]] >= contexts]


def build(logs: Sequence[Path], check: Check, baseline: str = "baseline", default: str = "balanced"
          ) -> tuple[str, dict[str, Any]]:
    """The Markdown block and its figures: {(pipeline, set, kind, context): summary}."""
    table: list[list[Any]] = []
    figures: dict[tuple[str, ...], dict[str, Any]] = {}
    for log in logs:
        pipeline, dataset, kind, rows = read(log)
        rows = _complete(rows)
        contexts = list(dict.fromkeys(r["context"] for r in rows))
        summary = summarise(rows, contexts, check=check)
        for context in contexts:
            m = summary[context]
            # rows judged again from an earlier session's log: their times are not this session's
            earlier = any("from_log" in r for r in rows)
            figures[pipeline, dataset, kind, context] = {**m, "targets": summary["targets"], "earlier": earlier}
            table.append([SET_NAMES.get(dataset, dataset), pipeline, kind, context, m["questions"],
                          *(with_ci(m, c) for c in COLUMNS), fmt(m["total_ms_median"] / 1000),
                          fmt(m["total_ms_p90"] / 1000), fmt(m["prompt_tokens_median"])])
    lines = [markdown_table(HEADER, table), ""]
    lines += targets(figures, default) + times(figures, default, baseline)
    return "\n".join(lines), {" / ".join(k): v for k, v in figures.items()}


def targets(figures: dict[tuple[str, ...], dict[str, Any]], pipeline: str) -> list[str]:
    out = []
    for (p, dataset, kind, context), m in figures.items():
        if p != pipeline:
            continue
        for name, t in m["targets"].items():
            if _belongs(name, context):
                sign = "≥" if t["kind"] == "min" else "≤"
                verdict = "met" if t["met"] else f"missed by {abs(t['value'] - t['threshold']):.2f}"
                out.append(f"- {pipeline}, {SET_NAMES.get(dataset, dataset)} {kind}, {context}: {name} {sign} "
                           f"{t['threshold']:g}: {t['value']:.2f} ({t['lo']:.2f}–{t['hi']:.2f}, n={t['n']}), "
                           f"{verdict}")
    return out


def _belongs(target: str, context: str) -> bool:
    """Each target is stated on the row of the context it is measured on."""
    if target == "rejection":
        return context == "negative"
    if target == "rejection_counterfactual":
        return context == "counterfactual"
    return context == "retrieved" and context not in NEGATIVE


def times(figures: dict[tuple[str, ...], dict[str, Any]], pipeline: str, baselines: str) -> list[str]:
    """Median answer time against the first of the (comma-separated) baseline pipelines with the same rows, run
    in this session (times of rows judged again from an older log are not compared)."""
    out = []
    for (p, dataset, kind, context), m in figures.items():
        found = [(b, figures[b, dataset, kind, context]) for b in baselines.split(",")
                 if (b, dataset, kind, context) in figures and not figures[b, dataset, kind, context]["earlier"]]
        baseline, base = found[0] if found else ("", None)
        if p == pipeline and p != baseline and base and base["total_ms_median"]:
            ratio = m["total_ms_median"] / base["total_ms_median"]
            out.append(f"- median answer time, {SET_NAMES.get(dataset, dataset)} {kind} {context}: {pipeline} "
                       f"{m['total_ms_median'] / 1000:.1f} s against {baseline} {base['total_ms_median'] / 1000:.1f}"
                       f" s: {ratio:.2f}× (target ≤ 1.3×, {'met' if ratio <= 1.3 else 'missed'})")
    return out
