"""Summaries of scored answers: means with bootstrap intervals per context, the faithfulness rates, and
the targets of the default pack.

Rates, each over the replies where it means something:
- ``false_refusal``: the reply refuses although the gold passage is in the prompt (gold, noisy, and
  retrieved where the gold passage was among the retrieved chunks);
- ``rejection``: the reply refuses when only distractors are in the prompt (negative);
- ``support_ok``: of the correct replies (``contains``), those whose first supporting source — cited, or
  attributed by content — holds a reference answer;
- ``cites``: of the correct replies, those citing [n] themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zhiku.eval.stats import mean_ci, median, ratio_ci

ACCURACY = "contains"  # the accuracy the targets use: the reference answer is in the reply
TARGETS = {  # name: (threshold, "min" = at least / "max" = at most)
    "retrieved_vs_gold": (0.9, "min"),
    "false_refusal": (0.05, "max"),
    "rejection": (0.8, "min"),
    "support_ok": (0.9, "min"),
}


def _ci(out: dict[str, Any], key: str, values: Sequence[float], seed: int) -> None:
    mean, lo, hi = mean_ci(values, seed)
    out[key], out[f"{key}_lo"], out[f"{key}_hi"] = mean, lo, hi
    out[f"{key}_n"] = len(values)


def _context_summary(mine: Sequence[dict[str, Any]], context: str, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"questions": len(mine), "errors": sum(1 for r in mine if r.get("error"))}
    for key in ("em", "f1", "contains", "refusal"):
        _ci(out, key, [r[key] for r in mine], seed)
    if context == "negative":
        _ci(out, "rejection", [r["refusal"] for r in mine], seed)
    elif context != "none":
        _ci(out, "false_refusal", [r["refusal"] for r in mine if r["gold_in_context"]], seed)
        correct = [r for r in mine if r[ACCURACY]]
        _ci(out, "support_ok", [r["support_ok"] for r in correct], seed)
        _ci(out, "cites", [r["cites"] for r in correct], seed)
        if context == "retrieved":
            out["gold_retrieved"] = sum(r["gold_in_context"] for r in mine) / len(mine) if mine else float("nan")
    out["ttft_ms_median"] = median([r["ttft_ms"] for r in mine if r.get("ttft_ms") is not None])
    out["total_ms_median"] = median([r["total_ms"] for r in mine if r.get("total_ms") is not None])
    out["prompt_tokens_median"] = median([r["prompt_tokens"] for r in mine if r.get("prompt_tokens")])
    return out


def _paired(rows: Sequence[dict[str, Any]], a: str, b: str, key: str) -> tuple[list[float], list[float]]:
    left = {r["id"]: r[key] for r in rows if r["context"] == a}
    right = {r["id"]: r[key] for r in rows if r["context"] == b}
    ids = [i for i in left if i in right]
    return [left[i] for i in ids], [right[i] for i in ids]


def summarise(rows: Sequence[dict[str, Any]], contexts: Sequence[str], seed: int = 0) -> dict[str, Any]:
    """{context: {metric, metric_lo, metric_hi, ...}, "compare": {...}, "targets": {...}}."""
    out: dict[str, Any] = {}
    for context in contexts:
        mine = [r for r in rows if r["context"] == context]
        if mine:
            out[context] = _context_summary(mine, context, seed)
    compare: dict[str, Any] = {}
    for other in ("retrieved", "noisy"):
        if other in out and "gold" in out:
            for key in (ACCURACY, "f1"):
                num, den = _paired(rows, other, "gold", key)
                ratio, lo, hi = ratio_ci(num, den, seed)
                compare[f"{other}_vs_gold_{key}"] = {"ratio": ratio, "lo": lo, "hi": hi, "n": len(num)}
    out["compare"] = compare
    out["targets"] = targets(rows, compare)
    return out


def targets(rows: Sequence[dict[str, Any]], compare: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Each target's value (with interval), threshold and whether it is met; missing data is left out."""
    values: dict[str, tuple[float, float, float, int]] = {}
    if f"retrieved_vs_gold_{ACCURACY}" in compare:
        c = compare[f"retrieved_vs_gold_{ACCURACY}"]
        values["retrieved_vs_gold"] = (c["ratio"], c["lo"], c["hi"], c["n"])
    with_gold = [r["refusal"] for r in rows if r["gold_in_context"] and r["context"] != "none"]
    if with_gold:
        values["false_refusal"] = (*mean_ci(with_gold, seed), len(with_gold))
    negatives = [r["refusal"] for r in rows if r["context"] == "negative"]
    if negatives:
        values["rejection"] = (*mean_ci(negatives, seed), len(negatives))
    correct = [r["support_ok"] for r in rows if r["context"] in ("retrieved", "noisy") and r[ACCURACY]]
    if correct:
        values["support_ok"] = (*mean_ci(correct, seed), len(correct))
    out = {}
    for name, (value, lo, hi, n) in values.items():
        threshold, kind = TARGETS[name]
        met = value >= threshold if kind == "min" else value <= threshold
        out[name] = {"value": value, "lo": lo, "hi": hi, "n": n, "threshold": threshold, "kind": kind, "met": met}
    return out
