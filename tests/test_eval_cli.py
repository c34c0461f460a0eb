"""`zhiku eval` end to end on a tiny dataset built here: real knowledge base, real embedder, real model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zhiku.config import Settings
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


def zhiku(*args: str, env_embedder: str | None = None, **settings: str) -> subprocess.CompletedProcess[str]:
    env = os.environ.copy()
    if env_embedder:
        env["ZHIKU_EMBEDDER"] = env_embedder
    env.update({f"ZHIKU_{k.upper()}": v for k, v in settings.items()})
    return subprocess.run([sys.executable, "-m", "zhiku", *args], capture_output=True, text=True, timeout=300,
                          env=env)


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
                 "--contexts", "gold,retrieved,negative,none", "--out", str(tmp_path / "a"))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == {str(smollm_path)}
    summary = data[str(smollm_path)]
    assert set(summary) == {"gold", "retrieved", "negative", "none", "compare", "targets", "check"}
    assert summary["check"]["applied"] == [Settings().answer_check_anchor, Settings().answer_check_p]
    # the summary is the mean of the per-reply scores kept in the report, with an interval around it
    full = json.loads(next((tmp_path / "a").glob("answers-tiny-*.json")).read_text(encoding="utf-8"))
    replies = full["replies"][str(smollm_path)]
    assert len(replies) == 2 * 4
    answers = {i: a for i, _, a, _ in QUESTIONS}
    for context in ("gold", "retrieved", "negative", "none"):
        m = summary[context]
        mine = [r for r in replies if r["context"] == context]
        assert m["questions"] == 2
        for key in ("em", "f1", "contains"):
            # replies the answer check turns into the no-answer reply score nothing
            expected = sum(0.0 if r["anchor"] is not None and r["anchor"] < Settings().answer_check_anchor
                           else answer_scores(r["reply"], answers[r["id"]], "en")[key] for r in mine) / 2
            assert m[key] == pytest.approx(expected), (context, key)
            assert m[f"{key}_lo"] <= m[key] <= m[f"{key}_hi"]
        assert m["ttft_ms_median"] > 0
    assert summary["negative"]["rejection"] == summary["negative"]["refusal"]
    assert "rejection" in summary["targets"] and "false_refusal" in summary["targets"]
    # every reply with passages came through knowledge-base QA: gold is always in the gold context
    assert all(r["gold_in_context"] for r in replies if r["context"] == "gold")
    assert not any(r["gold_in_context"] for r in replies if r["context"] in ("negative", "none"))
    assert full["retrieval"]["top_k"] == 2 and full["options"]["prompt"] == "default"
    assert len(list((tmp_path / "a").glob("answers-tiny-*.md"))) == 1


def test_answer_grid_ranks_the_levers(home: Path, tiny: Path, tmp_path: Path, smollm_path: Path) -> None:
    proc = zhiku("eval", "answers", str(tiny), "--model", str(smollm_path), "--limit", "2", "--json",
                 "--embedder", "use-m3", "--max-tokens", "8", "--threads", "2", "--contexts", "retrieved",
                 "--grid", "top_k=1,2", "prompt=default,short", "--out", str(tmp_path / "g"))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert {(r["top_k"], r["prompt"]) for r in rows} == {(k, p) for k in (1, 2) for p in ("default", "short")}
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    scores = [r["retrieved.contains"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    bad = zhiku("eval", "answers", str(tiny), "--grid", "temperature=1", "--out", str(tmp_path / "g"))
    assert bad.returncode != 0 and "unknown grid key 'temperature'" in bad.stderr + bad.stdout


def test_fusion_compares_weights_with_both_single_modes(home: Path, tiny: Path, tmp_path: Path) -> None:
    proc = zhiku("eval", "fusion", str(tiny), "--split", "all", "--weights", "0.5,1", "--json",
                 "--out", str(tmp_path / "f"), env_embedder="use-m3")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    modes = out["sets"]["tiny"]["modes"]
    assert set(modes) == {"bm25", "dense", "hybrid bm25_weight=0.5", "hybrid bm25_weight=1"}
    assert out["chosen_bm25_weight"] in (0.5, 1.0)
    for w in ("0.5", "1"):
        m = modes[f"hybrid bm25_weight={w}"]
        best = {k: max(modes["bm25"][k], modes["dense"][k]) for k in ("hit@5", "mrr@10")}
        assert m["margin"] == pytest.approx(min(m[k] - best[k] for k in best))


def test_progress_without_a_terminal_prints_every_phase_each_time_it_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from zhiku.commands.evaluate import _progress

    with _progress() as progress:  # pytest's stderr is not a terminal: plain lines
        for phase in ("files", "retrieve", "model", "model"):  # a sweep runs the same phase again
            for done in range(1, 11):
                progress(phase, done, 10)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split()[1] for line in lines if line.endswith(" 10/10")] == ["files:", "retrieve:", "model:", "model:"]
    assert sum(line.endswith(" 1/10") for line in lines) == 4


def test_counterfactual_and_two_part_kinds_through_the_product(home: Path, tmp_path: Path,
                                                                smollm_path: Path) -> None:
    corpus = [CorpusItem("p1", "Tower", "The Eiffel Tower in Paris was completed in 1889 for the World's Fair. "
                         "It is 330 metres tall and was designed by the company of Gustave Eiffel."),
              CorpusItem("p2", "Composer", "Beethoven was born in Bonn in 1770 and died in Vienna in 1827.")]
    questions = [Question("q1", "In what year was the tower completed for the World's Fair, 1889?", ["1889"],
                          ["p1"]),
                 Question("q2", "How tall is the tower?", ["330 metres"], ["p1"]),
                 Question("q3", "Where did Beethoven die in 1827?", ["Vienna"], ["p2"])]
    folder = datasets.save(Dataset("kinds", "en", corpus, questions), tmp_path / "kinds")
    log = tmp_path / "cf.jsonl"
    common = ["--model", str(smollm_path), "--max-tokens", "12", "--threads", "2", "--out", str(tmp_path / "a")]
    # the small model alone (answer_quality fast: no escalation to a larger pack installed here)
    proc = zhiku("eval", "answers", str(folder), "--kind", "counterfactual", "--live", "--log", str(log), *common,
                 answer_quality="fast")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert {r["id"] for r in rows} == {"q1~cf", "q3~cf"} and {r["context"] for r in rows} == {"counterfactual"}
    for r in rows:
        old, new = r["note"].split(" -> ")
        assert new in r["question"] and old not in r["question"] and r["passages"]  # the old paragraph
        assert r["check_live"] and r["right"] == r["refusal"]  # right = refused
    proc = zhiku("eval", "answers", str(folder), "--kind", "two-part", "--contexts", "gold", *common[:-1],
                 str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stderr
    full = json.loads(next((tmp_path / "b").glob("answers-kinds-*.json")).read_text(encoding="utf-8"))
    [row] = full["replies"][str(smollm_path)]  # q1 and q2 share a paragraph; q3 is alone on its own
    assert full["question_kind"] == "two-part" and row["id"] in ("q1+q2", "q2+q1")
    assert row["parts"] == [["1889"], ["330 metres"]] and " Also, " in row["question"]
    bad = zhiku("eval", "answers", str(folder), "--kind", "counterfactual", "--contexts", "gold", *common)
    assert bad.returncode != 0 and "counterfactual" in bad.stderr


def test_summary_judges_an_older_log_with_its_dataset(home: Path, tiny: Path, tmp_path: Path) -> None:
    log = tmp_path / "old.jsonl"
    row = {"model": "m", "id": "q1", "context": "gold", "reply": "Paris", "gold_in_context": True,
           "refusal": 0.0, "em": 1.0, "f1": 1.0, "contains": 1.0, "no_answer": 0.0, "cites": 0.0,
           "supported": 1.0, "support_ok": 1.0, "question": "In which city is the Eiffel Tower?",
           "passages": [CORPUS[0][1]], "ttft_ms": 5.0, "total_ms": 9.0, "prompt_tokens": 30}
    log.write_text(json.dumps(row) + "\n" + json.dumps({**row, "id": "q2", "reply": "Paris or Bonn"}) + "\n",
                   encoding="utf-8")
    proc = zhiku("eval", "summary", str(log), "--out", str(tmp_path / "s"), "--json")
    assert proc.returncode != 0 and "--dataset" in proc.stderr  # no references in the log: said, not guessed
    proc = zhiku("eval", "summary", str(log), "--dataset", str(tiny), "--out", str(tmp_path / "s"), "--json")
    assert proc.returncode == 0, proc.stderr
    gold = json.loads(proc.stdout)["m"]["gold"]
    assert gold["right"] == 0.5 and gold["cite_ok"] == 0.0 and gold["total_ms_p90"] == 9.0


def test_summary_rechecks_logged_replies_with_this_versions_answer_check(home: Path, tmp_path: Path) -> None:
    """A reply logged with an anchoring the check of its day measured (0: its wording was in no passage) is
    judged again from its question and passages with --recheck, and the threshold then applies to the new one."""
    log = tmp_path / "dev.jsonl"
    row = {"model": "m", "id": "q1", "context": "retrieved", "gold_in_context": True, "refusal": 0.0,
           "reply": "Based on the information provided in the documents, the tower is in Paris [1].",
           "question": "In which city is the Eiffel Tower?", "parts": [["Paris"]], "language": "en",
           "passages": ["The Eiffel Tower is a wrought-iron tower in Paris, France."], "titles": ["tower.txt"],
           "anchor": 0.0, "check_p": None, "ttft_ms": 5.0, "total_ms": 9.0, "prompt_tokens": 30, "em": 0.0,
           "f1": 0.2, "contains": 1.0, "no_answer": 0.0, "cites": 1.0, "supported": 1.0, "support_ok": 1.0}
    log.write_text(json.dumps(row) + "\n", encoding="utf-8")
    args = ["eval", "summary", str(log), "--check-anchor", "0.35", "--out", str(tmp_path / "s"), "--json"]
    before = zhiku(*args)
    after = zhiku(*args, "--recheck")
    assert before.returncode == 0 and after.returncode == 0, before.stderr + after.stderr
    assert json.loads(before.stdout)["m"]["retrieved"]["right"] == 0.0  # refused by the logged anchoring
    assert json.loads(after.stdout)["m"]["retrieved"]["right"] == 1.0
