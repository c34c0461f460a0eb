"""The dataset format and the SQuAD / CMRC 2018 / BEIR converters, on small files written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zhiku.eval import datasets
from zhiku.eval.datasets import DatasetError
from zhiku.eval.sweep import GridError, combinations, parse_grid


def _squad_file(path: Path, with_ids: bool = False, chinese: bool = False) -> Path:
    text = "《战国无双3》由光荣和ω-force开发。" if chinese else "Denver won Super Bowl 50."
    data = {"version": "1.1", "data": [
        {"title": "Super_Bowl_50", "paragraphs": [
            {"context": text, **({"id": "DEV_0"} if with_ids else {}), "qas": [
                {"id": "q1", "question": " Who won? ", "answers": [
                    {"text": "Denver", "answer_start": 0}, {"text": "Denver", "answer_start": 0},
                    {"text": "Denver ", "answer_start": 0}, {"text": "Denver won", "answer_start": 0}]}]},
            {"context": "It was played in 2016.", "qas": [
                {"id": "q2", "question": "When?", "answers": [{"text": "2016", "answer_start": 17}]}]}]},
        {"title": "Other", "paragraphs": [{"context": "Nothing asked here.", "qas": []}]}]}
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_convert_squad_and_load_back(tmp_path: Path) -> None:
    out = tmp_path / "squad"
    ds = datasets.convert_squad(_squad_file(tmp_path / "dev.json"), out)
    assert sorted(p.name for p in out.iterdir()) == ["corpus.jsonl", "meta.json", "questions.jsonl"]
    back = datasets.load(out)
    assert [c.id for c in back.corpus] == ["0-0", "0-1", "1-0"]
    assert back.corpus[0].title == "Super Bowl 50"
    q1, q2 = back.questions
    assert (q1.question, q1.answers, q1.gold_ids) == ("Who won?", ["Denver", "Denver won"], ["0-0"])
    assert q2.gold_ids == ["0-1"] and q1.grades() == {"0-0": 1.0}
    assert back.language == "en" and ds.fingerprint() == back.fingerprint()


def test_convert_cmrc_keeps_paragraph_ids(tmp_path: Path) -> None:
    ds = datasets.convert_cmrc(_squad_file(tmp_path / "cmrc.json", with_ids=True, chinese=True), tmp_path / "c")
    assert ds.corpus[0].id == "DEV_0" and ds.corpus[1].id == "0-1"
    assert datasets.load(tmp_path / "c").language == "zh"


def test_convert_beir_with_graded_qrels(tmp_path: Path) -> None:
    src = tmp_path / "scifact"
    (src / "qrels").mkdir(parents=True)
    (src / "corpus.jsonl").write_text("\n".join(json.dumps(o) for o in [
        {"_id": "d1", "title": "T1", "text": "alpha"}, {"_id": "d2", "title": "", "text": "beta"},
        {"_id": "d3", "title": "T3", "text": "gamma"}]) + "\n", encoding="utf-8")
    (src / "queries.jsonl").write_text("\n".join(json.dumps(o) for o in [
        {"_id": "q1", "text": "alpha?"}, {"_id": "q2", "text": "beta?"}, {"_id": "q3", "text": "none?"}]) + "\n",
        encoding="utf-8")
    (src / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td3\t1\nq2\td2\t1\nq3\td2\t0\n", encoding="utf-8")
    datasets.convert_beir(src, tmp_path / "out")
    ds = datasets.load(tmp_path / "out")
    assert [q.id for q in ds.questions] == ["q1", "q2"]  # q3 has no relevant item
    q1, q2 = ds.questions
    assert q1.grades() == {"d1": 2.0, "d3": 1.0} and q1.answers == []
    assert q2.gold == {} and q2.grades() == {"d2": 1.0}  # binary qrels stay plain gold ids
    with pytest.raises(DatasetError, match="dev.tsv"):
        datasets.convert_beir(src, tmp_path / "x", split="dev")


def test_load_reports_bad_lines(tmp_path: Path) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "corpus.jsonl").write_text('{"id": "a", "text": "x"}\n', encoding="utf-8")
    (d / "questions.jsonl").write_text('{"id": "q", "question": "?", "gold_ids": ["zz"]}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"questions.jsonl:1: gold id 'zz'"):
        datasets.load(d)
    (d / "corpus.jsonl").write_text('{"id": "a", "text": "x"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"corpus.jsonl:2: not JSON"):
        datasets.load(d)
    with pytest.raises(DatasetError, match="not a dataset folder"):
        datasets.load(tmp_path / "missing")


def test_fixed_seed_sample() -> None:
    qs = [datasets.Question(str(i), "?", [], []) for i in range(100)]
    a, b = datasets.sample(qs, 10, seed=3), datasets.sample(qs, 10, seed=3)
    assert [q.id for q in a] == [q.id for q in b]
    assert [int(q.id) for q in a] == sorted(int(q.id) for q in a)
    assert [q.id for q in datasets.sample(qs, 10, seed=4)] != [q.id for q in a]
    assert len(datasets.sample(qs, None)) == 100 and len(datasets.sample(qs, 500)) == 100


def test_parse_grid() -> None:
    grid = parse_grid(["chunk_size=300,500,800 top_k=3,5", "bm25-weight=0.5"])
    assert grid == {"chunk_size": [300, 500, 800], "top_k": [3, 5], "bm25_weight": [0.5]}
    assert len(combinations(grid)) == 6
    assert combinations({}) == [{}]
    for bad in ("chunk_size", "colour=red", "top_k=three", "titles=maybe"):
        with pytest.raises(GridError):
            parse_grid([bad])
