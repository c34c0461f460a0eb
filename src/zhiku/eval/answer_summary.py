"""Summaries of scored answers: means with bootstrap intervals per context, the faithfulness rates, and
the targets of the default pack.

Rates, each over the replies where it means something:
- ``right``: the verdict of scoring.py (every part present, no hedging between candidates); under the
  negative contexts a refusal is right;
- ``false_refusal``: the reply refuses although the gold passage is in the prompt (gold, noisy, and
  retrieved where the gold passage was among the retrieved chunks);
- ``rejection``: the reply refuses when only distractors are in the prompt (negative), or when the passage
  no longer answers the changed question (counterfactual);
- ``cite_ok``: of the right replies, those citing [n] a passage that holds each part;
- ``support_ok``: of the right replies, those whose first supporting source — cited, or attributed by
  content — holds a reference answer;
- ``cites``: of the right replies, those citing [n] themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from zhiku.config import Settings
from zhiku.eval.rescore import NEGATIVE
from zhiku.eval.stats import mean_ci, median, quantile, ratio_ci

ACCURACY = "right"  # the accuracy the targets use (scoring.py)
TARGETS = {  # name: (threshold, "min" = at least / "max" = at most); issue 21, the default setting
    "right_retrieved": (0.65, "min"),  # single-span questions with the retrieved chunks
    "all_parts_retrieved": (0.6, "min"),  # multi-part questions (zh_int): every part present
    "false_refusal": (0.08, "max"),
    "rejection": (0.8, "min"),  # distractors only
    "rejection_counterfactual": (0.8, "min"),
    "cite_ok": (0.9, "min"),
}


def _ci(out: dict[str, Any], key: str, values: Sequence[float], seed: int) -> None:
    mean, lo, hi = mean_ci(values, seed)
    out[key], out[f"{key}_lo"], out[f"{key}_hi"] = mean, lo, hi
    out[f"{key}_n"] = len(values)


def _context_summary(mine: Sequence[dict[str, Any]], context: str, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"questions": len(mine), "errors": sum(1 for r in mine if r.get("error"))}
    for key in ("em", "f1", "contains", "right", "refusal"):
        _ci(out, key, [r[key] for r in mine], seed)
    if context in NEGATIVE:
        _ci(out, "rejection", [r["refusal"] for r in mine], seed)
    elif context != "none":
        _ci(out, "false_refusal", [r["refusal"] for r in mine if r["gold_in_context"]], seed)
        _ci(out, "parts_found", [r["parts_found"] for r in mine], seed)
        _ci(out, "hedged", [r["hedged"] for r in mine], seed)
        correct = [r for r in mine if r[ACCURACY]]
        for key in ("cite_ok", "support_ok", "cites"):
            _ci(out, key, [r[key] for r in correct], seed)
        if context == "retrieved":
            out["gold_retrieved"] = sum(r["gold_in_context"] for r in mine) / len(mine) if mine else float("nan")
    totals = [r["total_ms"] for r in mine if r.get("total_ms") is not None]
    out["ttft_ms_median"] = median([r["ttft_ms"] for r in mine if r.get("ttft_ms") is not None])
    out["total_ms_median"], out["total_ms_p90"] = median(totals), quantile(totals, 0.9)
    out["prompt_tokens_median"] = median([r["prompt_tokens"] for r in mine if r.get("prompt_tokens")])
    return out


def _paired(rows: Sequence[dict[str, Any]], a: str, b: str, key: str) -> tuple[list[float], list[float]]:
    left = {r["id"]: r[key] for r in rows if r["context"] == a}
    right = {r["id"]: r[key] for r in rows if r["context"] == b}
    ids = [i for i in left if i in right]
    return [left[i] for i in ids], [right[i] for i in ids]


Check = tuple[float, float]  # the answer check's thresholds: (min anchoring, min P(yes))


def check_of(settings: Settings) -> Check | None:
    """The thresholds the product applies (None when the check is off)."""
    return (settings.answer_check_anchor, settings.answer_check_p) if settings.answer_check else None


def checked(rows: Sequence[dict[str, Any]], check: Check) -> list[dict[str, Any]]:
    """The rows as the product replies with the answer check at these thresholds: an answer that fails it
    becomes the no-answer reply (a refusal: no credit, no supporting source). Replies the check did not
    see (refusals, plain chat) are left as they are."""
    min_anchor, min_p = check
    out = []
    for r in rows:
        anchor, p = r.get("anchor"), r.get("check_p")
        if r.get("check_live"):  # the product applied its check as it answered
            pass
        elif (anchor is not None and anchor < min_anchor) or (p is not None and p < min_p):
            negative = r["context"] in NEGATIVE
            r = {**r, "refusal": 1.0, "em": 0.0, "f1": 0.0, "contains": 0.0, "cites": 0.0, "supported": 0.0,
                 "support_ok": 0.0, "right": float(negative), "cite_ok": 0.0 if not negative else float("nan"),
                 "parts_found": 0.0 if not negative else float("nan"), "hedged": 0.0, "checked_out": True}
        out.append(r)
    return out


CURVE = (0.0, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8)
_RATES: tuple[tuple[str, Callable[[dict[str, Any]], bool], str], ...] = (
    ("rejection", lambda r: r["context"] in NEGATIVE, "refusal"),
    ("false_refusal", lambda r: bool(r["gold_in_context"]) and r["context"] != "none", "refusal"),
    ("gold_contains", lambda r: r["context"] == "gold", ACCURACY),
    ("retrieved_contains", lambda r: r["context"] == "retrieved", ACCURACY),
)


def check_curve(rows: Sequence[dict[str, Any]], thresholds: Sequence[float] = CURVE) -> list[dict[str, Any]]:
    """The trade-off of each signal alone, per threshold: rejection, false refusals and accuracy with gold
    and retrieved passages (point values)."""
    curve = []
    for signal, key in (("anchor", "anchor"), ("p_yes", "check_p")):
        if not any(r.get(key) is not None for r in rows):
            continue
        for t in thresholds:
            rs = checked(rows, (t, 0.0) if signal == "anchor" else (0.0, t))
            point: dict[str, Any] = {"signal": signal, "threshold": t}
            for name, pick, value in _RATES:
                values = [r[value] for r in rs if pick(r)]
                point[name] = sum(values) / len(values) if values else None
            # of the correct replies with the gold passage in the prompt, those the check refuses
            lost = [bool(c.get("checked_out")) for r, c in zip(rows, rs, strict=True)
                    if r[ACCURACY] and r["gold_in_context"] and r["context"] != "none"]
            point["correct_lost"] = sum(lost) / len(lost) if lost else None
            curve.append(point)
    return curve


def summarise(rows: Sequence[dict[str, Any]], contexts: Sequence[str], seed: int = 0,
              check: Check | None = None) -> dict[str, Any]:
    """{context: {metric, metric_lo, metric_hi, ...}, "compare": {...}, "targets": {...}, "check": {...}};
    with `check` the answer check is applied first (`checked`)."""
    curve = check_curve(rows)
    if check is not None:
        rows = checked(rows, check)
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
    if curve:
        out["check"] = {"applied": list(check) if check else None, "curve": curve}
    return out


def targets(rows: Sequence[dict[str, Any]], compare: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Each target's value (with interval), threshold and whether it is met; missing data is left out."""
    values: dict[str, tuple[float, float, float, int]] = {}
    picks = {
        "right_retrieved": ("right", lambda r: r["context"] == "retrieved" and r.get("kind", "single") == "single"),
        "all_parts_retrieved": ("right", lambda r: r["context"] == "retrieved" and r.get("kind") == "multi-part"),
        "false_refusal": ("refusal", lambda r: bool(r["gold_in_context"]) and r["context"] not in ("none", *NEGATIVE)),
        "rejection": ("refusal", lambda r: r["context"] == "negative"),
        "rejection_counterfactual": ("refusal", lambda r: r["context"] == "counterfactual"),
        "cite_ok": ("cite_ok", lambda r: r["context"] in ("gold", "retrieved", "noisy") and bool(r[ACCURACY])),
    }
    for name, (key, pick) in picks.items():
        chosen = [float(r[key]) for r in rows if pick(r)]
        if chosen:
            values[name] = (*mean_ci(chosen, seed), len(chosen))
    out = {}
    for name, (value, lo, hi, n) in values.items():
        threshold, kind = TARGETS[name]
        met = value >= threshold if kind == "min" else value <= threshold
        out[name] = {"value": value, "lo": lo, "hi": hi, "n": n, "threshold": threshold, "kind": kind, "met": met}
    return out
