"""The verdicts of one logged reply (scoring.py), from the log alone, so any log can be judged again.

A row carries the reply, the passages in the prompt, the question, its parts (references) and the candidate
spans found in the passages. Logs written before rows carried parts and candidates get them from their
dataset (`fill`), matched by question id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zhiku.chat import answer_check
from zhiku.chat.citations import is_refusal
from zhiku.eval.datasets import Dataset
from zhiku.eval.scoring import Pool, cite_ok, judge

NEGATIVE = ("negative", "counterfactual")  # contexts whose right reply is a refusal


def rescore(row: dict[str, Any]) -> dict[str, Any]:
    """right, parts_found, hedged, competing and cite_ok of one row (under negatives: right = refused)."""
    refused = bool(row.get("refusal")) or is_refusal(row.get("reply") or "")
    if row["context"] in NEGATIVE:
        return {"right": float(refused), "parts_found": float("nan"), "hedged": 0.0, "competing": [],
                "cite_ok": float("nan")}
    parts = row.get("parts") or []
    language = row.get("language") or "en"
    v = judge(row.get("reply") or "", parts, language, row.get("question") or "", row.get("candidates") or [])
    ok = v.right and cite_ok(row.get("reply") or "", parts, row.get("passages") or [], language,
                             row.get("numbering"))
    return {"right": float(v.right), "parts_found": v.parts_found, "hedged": float(v.hedged),
            "competing": list(v.competing), "cite_ok": float(ok)}


def rechecked(row: dict[str, Any]) -> float | None:
    """The reply's anchoring by this version's answer check (None for a refusal or a reply never checked)."""
    reply = row.get("reply") or ""
    if row.get("anchor") is None or is_refusal(reply):
        return row.get("anchor")
    return answer_check.judge(reply, row.get("question") or "", row.get("passages") or [],
                              row.get("titles") or []).anchor


def fill(rows: Sequence[dict[str, Any]], dataset: Dataset) -> list[dict[str, Any]]:
    """Rows of an older log with the parts, candidates and language its dataset gives, then judged."""
    by_id = {q.id: q for q in dataset.questions}
    pool = Pool((a for q in dataset.questions for a in q.answers), dataset.language)
    out = []
    for r in rows:
        r = dict(r)
        q = by_id.get(r["id"])
        if "parts" not in r and q is not None:
            r["parts"] = q.answer_parts() if r["context"] not in NEGATIVE else []
            r["kind"] = q.kind
        if "candidates" not in r:
            r["candidates"] = pool.candidates_in(r.get("passages") or [])
        r.setdefault("language", dataset.language)
        r.update(rescore(r))
        out.append(r)
    return out
