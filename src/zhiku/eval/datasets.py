"""The evaluation dataset format and converters from SQuAD v1.1, CMRC 2018 and BEIR.

A dataset is a folder:

- ``corpus.jsonl``: one object per line, ``{"id": str, "title": str, "text": str}``;
- ``questions.jsonl``: ``{"id": str, "question": str, "answers": [str, ...], "gold_ids": [corpus id, ...]}``
  and optionally ``"gold": {corpus id: grade}`` for graded relevance (grades > 0; when absent every gold id has
  grade 1), ``"parts": [[str, ...], ...]`` for a question whose answer has several parts (one list of
  alternatives each; right only when every part is in the reply) and ``"kind"`` (how it was made, kinds.py);
- ``meta.json`` (optional): ``{"name": str, "language": "en" | "zh", "source": str}``.

``answers`` may be empty (retrieval-only sets such as BEIR); ``gold_ids`` may be empty (the question is then
left out of retrieval scores and counted).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zhiku.cjk import HAN_CHAR

CORPUS = "corpus.jsonl"
QUESTIONS = "questions.jsonl"
META = "meta.json"



class DatasetError(ValueError):
    """A dataset folder or source file is missing or malformed; the message names the file and line."""


@dataclass
class CorpusItem:
    id: str
    title: str
    text: str


@dataclass
class Question:
    id: str
    question: str
    answers: list[str]
    gold_ids: list[str]
    gold: dict[str, float] = field(default_factory=dict)
    parts: list[list[str]] = field(default_factory=list)  # several parts: every one must be in the reply
    kind: str = "single"  # single, multi-part, two-part or counterfactual (kinds.py)
    note: str = ""  # what a derived question changed, e.g. "1995 -> 1998"

    def answer_parts(self) -> list[list[str]]:
        """The parts a right reply holds, each a list of alternatives: one part (`answers`) when not given."""
        return self.parts or ([self.answers] if self.answers else [])

    def grades(self) -> dict[str, float]:
        """Relevance grade per gold corpus id: the graded map where given, else 1 for each gold id."""
        if self.gold:
            return {k: float(v) for k, v in self.gold.items() if v > 0}
        return dict.fromkeys(self.gold_ids, 1.0)


@dataclass
class Dataset:
    name: str
    language: str  # "en" or "zh": picks the answer normalisation
    corpus: list[CorpusItem]
    questions: list[Question]
    source: str = ""

    def corpus_by_id(self) -> dict[str, CorpusItem]:
        return {c.id: c for c in self.corpus}

    def fingerprint(self) -> str:
        """A short hash of the corpus, so a cached knowledge base is reused only for the same corpus."""
        h = hashlib.sha256()
        for c in self.corpus:
            h.update(json.dumps([c.id, c.title, c.text], ensure_ascii=False).encode())
        return h.hexdigest()[:12]


def detect_language(texts: Iterable[str]) -> str:
    """"zh" when CJK characters make up a fair share of the text, else "en"."""
    cjk = total = 0
    for t in texts:
        cjk += len(HAN_CHAR.findall(t))
        total += len(t)
    return "zh" if total and cjk / total > 0.2 else "en"


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise DatasetError(f"{path} not found")
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{path}:{n}: not JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise DatasetError(f"{path}:{n}: expected a JSON object")
            yield n, obj


def load(folder: Path) -> Dataset:
    """Read a dataset folder; raise DatasetError with file:line on bad input."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a dataset folder (expected {CORPUS} and {QUESTIONS} inside)")
    corpus: list[CorpusItem] = []
    seen: set[str] = set()
    for n, obj in _read_jsonl(folder / CORPUS):
        if "id" not in obj or not isinstance(obj.get("text", ""), str):
            raise DatasetError(f"{folder / CORPUS}:{n}: needs 'id' and 'text'")
        cid = str(obj["id"])
        if cid in seen:
            raise DatasetError(f"{folder / CORPUS}:{n}: duplicate id {cid!r}")
        seen.add(cid)
        corpus.append(CorpusItem(cid, str(obj.get("title") or ""), obj.get("text") or ""))
    questions: list[Question] = []
    for n, obj in _read_jsonl(folder / QUESTIONS):
        if "id" not in obj or not isinstance(obj.get("question"), str):
            raise DatasetError(f"{folder / QUESTIONS}:{n}: needs 'id' and 'question'")
        gold_map = obj.get("gold") or {}
        gold_ids = [str(g) for g in obj.get("gold_ids") or gold_map.keys()]
        unknown = [g for g in gold_ids if g not in seen]
        if unknown:
            raise DatasetError(f"{folder / QUESTIONS}:{n}: gold id {unknown[0]!r} is not in {CORPUS}")
        parts = [[str(a) for a in p] for p in obj.get("parts") or []]
        questions.append(Question(str(obj["id"]), obj["question"], [str(a) for a in obj.get("answers") or []],
                                  gold_ids, {str(k): float(v) for k, v in gold_map.items()}, parts,
                                  str(obj.get("kind") or "single")))
    meta: dict[str, Any] = {}
    if (folder / META).is_file():
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    language = meta.get("language") or detect_language(q.question for q in questions[:500])
    return Dataset(meta.get("name") or folder.name, language, corpus, questions, meta.get("source", ""))


def save(dataset: Dataset, folder: Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / CORPUS).open("w", encoding="utf-8") as f:
        for c in dataset.corpus:
            f.write(json.dumps({"id": c.id, "title": c.title, "text": c.text}, ensure_ascii=False) + "\n")
    with (folder / QUESTIONS).open("w", encoding="utf-8") as f:
        for q in dataset.questions:
            row: dict[str, Any] = {"id": q.id, "question": q.question, "answers": q.answers, "gold_ids": q.gold_ids}
            if q.gold:
                row["gold"] = q.gold
            if q.parts:
                row["parts"] = q.parts
            if q.kind != "single":
                row["kind"] = q.kind
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    meta = {"name": dataset.name, "language": dataset.language, "source": dataset.source}
    (folder / META).write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return folder


def sample(questions: list[Question], limit: int | None, seed: int = 0) -> list[Question]:
    """A fixed-seed random sample of `limit` questions, kept in dataset order; all when limit is None."""
    if limit is None or limit >= len(questions):
        return list(questions)
    picked = sorted(random.Random(seed).sample(range(len(questions)), limit))
    return [questions[i] for i in picked]


SPLITS = ("all", "dev", "test")


def split(questions: list[Question], part: str) -> list[Question]:
    """A fixed half of the questions by a hash of their id: "dev" to choose settings on, "test" to report
    on, "all" for both. The halves never depend on the sample size or seed."""
    if part == "all":
        return list(questions)
    if part not in SPLITS:
        raise DatasetError(f"unknown split {part!r}; use {', '.join(SPLITS)}")
    want = 0 if part == "dev" else 1
    return [q for q in questions if hashlib.sha256(q.id.encode()).digest()[0] % 2 == want]


def articles(dataset: Dataset, count: int | None, seed: int = 0) -> Dataset:
    """Only `count` articles (corpus items grouped by title), chosen with `seed`, and their questions: a
    smaller corpus whose distractors still come from the same articles as the gold passages."""
    titles = list(dict.fromkeys(c.title for c in dataset.corpus))
    if count is None or count >= len(titles):
        return dataset
    keep = set(random.Random(seed).sample(titles, count))
    corpus = [c for c in dataset.corpus if c.title in keep]
    ids = {c.id for c in corpus}
    questions = [q for q in dataset.questions if q.gold_ids and set(q.gold_ids) <= ids]
    return Dataset(dataset.name, dataset.language, corpus, questions, dataset.source)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(s for s in items if s))


def _squad_like(path: Path, name: str, language: str, para_id: Any) -> Dataset:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"{path}: not a SQuAD-format file ({e})") from None
    corpus: list[CorpusItem] = []
    questions: list[Question] = []
    for ai, article in enumerate(data):
        for pi, para in enumerate(article["paragraphs"]):
            cid = para_id(ai, pi, article, para)
            corpus.append(CorpusItem(cid, str(article.get("title") or "").replace("_", " "), para["context"]))
            for qa in para["qas"]:
                answers = _unique(str(a["text"]).strip() for a in qa.get("answers", []))
                questions.append(Question(str(qa["id"]), qa["question"].strip(), answers, [cid]))
    return Dataset(name, language, corpus, questions, str(path))


def convert_squad(path: Path, out: Path, article_count: int | None = None, seed: int = 0) -> Dataset:
    """SQuAD v1.1 (or v2.0, whose unanswerable questions keep their paragraph as gold and no answers)."""
    ds = articles(_squad_like(path, "squad", "en", lambda ai, pi, a, p: f"{ai}-{pi}"), article_count, seed)
    save(ds, out)
    return ds


def convert_cmrc(path: Path, out: Path, article_count: int | None = None, seed: int = 0) -> Dataset:
    """CMRC 2018 (SQuAD-style JSON with Chinese text); paragraph ids such as DEV_0 are kept."""
    ds = articles(_squad_like(path, "cmrc2018", "zh", lambda ai, pi, a, p: str(p.get("id") or f"{ai}-{pi}")),
                  article_count, seed)
    save(ds, out)
    return ds


def convert_beir(folder: Path, out: Path, split: str = "test") -> Dataset:
    """A BEIR folder: corpus.jsonl (_id, title, text), queries.jsonl (_id, text), qrels/<split>.tsv
    (query-id, corpus-id, score with a header line). Grades > 0 become the graded gold map."""
    folder = Path(folder)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise DatasetError(f"{qrels_path} not found (choose the split with --split)")
    corpus = [CorpusItem(str(o["_id"]), str(o.get("title") or ""), str(o.get("text") or ""))
              for _, o in _read_jsonl(folder / "corpus.jsonl")]
    queries = {str(o["_id"]): str(o.get("text") or "") for _, o in _read_jsonl(folder / "queries.jsonl")}
    qrels: dict[str, dict[str, float]] = {}
    with qrels_path.open(encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.reader(f, delimiter="\t"), 1):
            if n == 1 and not row[-1].strip().lstrip("-").isdigit():
                continue  # header
            if len(row) < 3:
                raise DatasetError(f"{qrels_path}:{n}: expected query-id, corpus-id, score")
            qrels.setdefault(row[0], {})[row[1]] = float(row[2])
    ids = {c.id for c in corpus}
    questions = []
    for qid, rels in qrels.items():
        gold = {cid: g for cid, g in rels.items() if g > 0 and cid in ids}
        if qid in queries and gold:
            graded = gold if len(set(gold.values())) > 1 or set(gold.values()) != {1.0} else {}
            questions.append(Question(qid, queries[qid], [], list(gold), graded))
    ds = Dataset(folder.name, detect_language(q.question for q in questions[:500]), corpus, questions, str(folder))
    save(ds, out)
    return ds


def convert_rgb(path: Path, out: Path) -> Dataset:
    """RGB's information-integration set (zh_int.json, JSON lines): each question's answer has several parts
    (`answer`: one entry per part, a list for alternatives) found in different documents (`positive`: one list
    per part); `negative` holds same-topic documents that answer no part. Corpus = every document once."""
    corpus: dict[str, CorpusItem] = {}

    def doc(text: str) -> str:
        cid = "d" + hashlib.sha256(text.encode()).hexdigest()[:12]
        corpus.setdefault(cid, CorpusItem(cid, "", " ".join(text.split())))
        return cid

    questions = []
    for n, obj in _read_jsonl(Path(path)):
        try:
            parts = [[str(a) for a in (p if isinstance(p, list) else [p])] for p in obj["answer"]]
            gold = [doc(t) for group in obj["positive"] for t in group]
            for t in obj.get("negative") or []:
                doc(t)
            questions.append(Question(str(obj["id"]), str(obj["query"]), _unique(a for p in parts for a in p),
                                      _unique(gold), parts=parts, kind="multi-part"))
        except (KeyError, TypeError) as e:
            raise DatasetError(f"{path}:{n}: not an RGB record ({e})") from None
    ds = Dataset("rgb_zh_int", "zh", list(corpus.values()), questions, str(path))
    save(ds, out)
    return ds
