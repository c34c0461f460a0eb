"""`zhiku eval` end to end on a tiny dataset built here: real knowledge base, real embedder, real model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zhiku.eval import datasets
from zhiku.eval.datasets import CorpusItem, Dataset, Question
from zhiku.eval.metrics import answer_scores

CORPUS = [
    ("c1", "The Eiffel Tower is a wrought-iron lattice tower in Paris, France, completed in 1889."),
    ("c2", "Mount Everest is Earth's highest mountain above sea level, in the Himalayas."),
    ("c3", "The Great Barrier Reef is the world's largest coral reef system, off Queensland, Australia."),
    ("c4", "Photosynthesis is the process plants use to turn light into chemical energy."),
    ("c5", "The Amazon River in South America is the largest river by discharge volume of water."),
    ("c6", "Ludwig van Beethoven was a German composer and pianist, born in Bonn in 1770."),
]
QUESTIONS = [
    ("q1", "In which city is the Eiffel Tower?", ["Paris"], ["c1"]),
    ("q2", "Where was the composer Beethoven born?", ["Bonn"], ["c6"]),
    ("q3", "What is the highest mountain above sea level?", ["Mount Everest"], ["c2"]),
    ("q4", "Which coral reef system is the largest?", ["Great Barrier Reef"], ["c3"]),
]


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    ds = Dataset("tiny", "en", [CorpusItem(i, "", t) for i, t in CORPUS],
                 [Question(i, q, a, g) for i, q, a, g in QUESTIONS])
    return datasets.save(ds, tmp_path / "tiny")


def zhiku(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zhiku", *args], capture_output=True, text=True, timeout=300,
                          env=os.environ.copy())


def test_retrieval_json(home: Path, tiny: Path, tmp_path: Path) -> None:
    proc = zhiku("eval", "retrieval", str(tiny), "--json", "--embedder", "use-m3", "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # stdout holds exactly one JSON object
    assert set(data) == {"bm25", "dense", "hybrid"}
    for mode, m in data.items():
        for key in ("hit@1", "hit@3", "hit@5", "hit@10", "mrr@10", "ndcg@10", "recall@5"):
            assert 0.0 <= m[key] <= 1.0, (mode, key)
        assert m["questions"] == 4 and m["latency_ms_median"] > 0
    # every question names its paragraph's rare words: keyword search must put it first
    assert data["bm25"]["hit@1"] == 1.0 and data["hybrid"]["hit@1"] == 1.0
    assert data["dense"]["mrr@10"] >= 0.5
    assert len(list((tmp_path / "r").glob("retrieval-tiny-*.png"))) == 1


def test_sweep_ranks_combinations(home: Path, tiny: Path, tmp_path: Path) -> None:
    proc = zhiku("eval", "retrieval", str(tiny), "--json", "--embedder", "use-m3", "--modes", "bm25,hybrid",
                 "--grid", "chunk_size=60,400", "top_k=1,3", "--out", str(tmp_path / "s"))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["grid"] == {"chunk_size": [60, 400], "top_k": [1, 3]} and out["metric"] == "hit@top_k"
    rows = out["rows"]
    assert len(rows) == 2 * 2 * 2  # chunk sizes x top_k x modes
    assert [r["rank"] for r in rows] == list(range(1, 9))
    assert [r["hit@top_k"] for r in rows] == sorted((r["hit@top_k"] for r in rows), reverse=True)
    assert {(r["chunk_size"], r["top_k"], r["mode"]) for r in rows} == {
        (c, k, m) for c in (60, 400) for k in (1, 3) for m in ("bm25", "hybrid")}
    for r in rows:
        assert r["hit@top_k"] == r[f"hit@{r['top_k']}"]


def test_answers_json(home: Path, tiny: Path, tmp_path: Path, smollm_path: Path) -> None:
    proc = zhiku("eval", "answers", str(tiny), "--model", str(smollm_path), "--limit", "2", "--json",
                 "--embedder", "use-m3", "--top-k", "2", "--max-tokens", "12", "--threads", "2",
                 "--out", str(tmp_path / "a"))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == {str(smollm_path)}
    summary = data[str(smollm_path)]
    assert set(summary) == {"gold", "retrieved", "none"}
    # the summary is the mean of the per-reply scores kept in the report
    full = json.loads(next((tmp_path / "a").glob("answers-tiny-*.json")).read_text(encoding="utf-8"))
    replies = full["replies"][str(smollm_path)]
    assert len(replies) == 2 * 3
    answers = {i: a for i, _, a, _ in QUESTIONS}
    for setting, m in summary.items():
        mine = [r for r in replies if r["setting"] == setting]
        assert m["questions"] == 2
        for key in ("em", "f1", "contains", "no_answer"):
            expected = sum(answer_scores(r["reply"], answers[r["id"]], "en")[key] for r in mine) / 2
            assert m[key] == pytest.approx(expected), (setting, key)
    assert full["retrieval"]["top_k"] == 2 and 0 <= full["retrieval"]["retrieved_hit@2"] <= 1
