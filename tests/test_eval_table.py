"""`zhiku eval table`: the README block from run logs named <pipeline>-<set>-<kind>.jsonl."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from zhiku.eval.table import build, read


def _row(qid: str, context: str, reply: str, ms: float, **extra: object) -> dict[str, object]:
    return {"model": "m", "id": qid, "context": context, "reply": reply, "gold_in_context": context == "retrieved",
            "refusal": float(reply.startswith("The documents do not")), "em": 0.0, "f1": 0.0, "contains": 0.0,
            "cites": 0.0, "supported": 0.0, "support_ok": 0.0, "question": "Where is the tower?",
            "passages": ["The Eiffel Tower is in Paris."], "parts": [["Paris"]] if context == "retrieved" else [],
            "candidates": ["Paris"], "language": "en", "check_live": True, "total_ms": ms, "ttft_ms": ms,
            "prompt_tokens": 40, **extra}


def _logs(folder: Path) -> list[Path]:
    refuse = "The documents do not answer this question."
    runs = {"baseline-tiny-single": [_row("q1", "retrieved", "Paris", 1000), _row("q1", "negative", "Paris", 1000),
                                     _row("q2", "retrieved", refuse, 3000), _row("q2", "negative", refuse, 3000),
                                     _row("q3", "retrieved", "Paris", 500)],  # q3 stopped mid-question
            "balanced-tiny-single": [_row("q1", "retrieved", "Paris [1]", 1500),
                                     _row("q1", "negative", refuse, 1500),
                                     _row("q2", "retrieved", "Paris [1]", 4500),
                                     _row("q2", "negative", refuse, 4500)],
            "balanced-tiny-two-part": [_row("q1+q2", "retrieved", "Paris [1]", 2000)]}
    paths = []
    for name, rows in runs.items():
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        paths.append(path)
    return paths


def test_the_table_states_rates_targets_and_the_time_against_the_baseline(tmp_path: Path) -> None:
    logs = _logs(tmp_path)
    assert read(logs[2])[:3] == ("balanced", "tiny", "two-part")
    multi = tmp_path / "fast-zh_int-multi-part.jsonl"
    multi.write_text(logs[2].read_text(encoding="utf-8"), encoding="utf-8")
    assert read(multi)[:3] == ("fast", "zh_int", "multi-part")
    block, figures = build(logs, (0.35, 0.0))
    base, new = figures["baseline / tiny / single / retrieved"], figures["balanced / tiny / single / retrieved"]
    assert base["questions"] == 2 and base["right"] == 0.5 and base["cite_ok"] == 0.0  # q3 left out
    assert new["right"] == 1.0 and new["cite_ok"] == 1.0 and new["false_refusal"] == 0.0
    assert figures["balanced / tiny / single / negative"]["rejection"] == 1.0
    assert "| tiny | balanced | single | retrieved | 2 | 1.00 (1.00–1.00) |" in block
    assert "right_retrieved ≥ 0.65: 1.00 (1.00–1.00, n=2), met" in block
    # medians 3.0 s against 2.0 s on the same rows
    assert "tiny single retrieved: balanced 3.0 s against baseline 2.0 s: 1.50× (target ≤ 1.3×, missed)" in block
    older = tmp_path / "older"
    older.mkdir()
    old = older / "baseline-tiny-single.jsonl"  # judged again from another session's log: no time compared
    old.write_text("".join(json.dumps({**json.loads(line), "from_log": "x.jsonl"}) + "\n"
                           for line in logs[0].read_text(encoding="utf-8").splitlines()), encoding="utf-8")
    assert "against baseline" not in build([old, logs[1]], (0.35, 0.0))[0]


def test_the_command_rewrites_only_its_readme_block(tmp_path: Path, home: Path) -> None:
    logs = _logs(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- answers21:start -->\nold\n<!-- answers21:end -->\ntail\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "zhiku", "eval", "table", *map(str, logs), "--readme", str(readme),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = readme.read_text(encoding="utf-8")
    assert "\nold\n" not in text and text.startswith("# x\n<!-- answers21:start -->\n| set |") and text.endswith(
        "<!-- answers21:end -->\ntail\n")
    assert list((tmp_path / "out").glob("answer-table-balanced-*.json"))
    bad = subprocess.run([sys.executable, "-m", "zhiku", "eval", "table", str(readme)], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode != 0 and "not a run log" in bad.stderr
