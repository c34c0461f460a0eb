"""zhiku eval convert squad|cmrc|beir | retrieval | answers"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from zhiku.commands.common import cli_settings, console, err_console, fail
from zhiku.commands.eval_progress import progress_bar as _progress
from zhiku.errors import ModelError
from zhiku.eval import datasets, report
from zhiku.eval.datasets import Dataset, DatasetError
from zhiku.eval.metrics import RANK_KS
from zhiku.eval.retrieval import MODES, ingest_config
from zhiku.eval.sweep import GridError, parse_grid
from zhiku.kb.types import KBError

app = typer.Typer(no_args_is_help=True)
convert_app = typer.Typer(no_args_is_help=True)
app.add_typer(convert_app, name="convert", help="Convert SQuAD, CMRC 2018 or BEIR files to zhiku's dataset format.")

DatasetArg = typer.Argument(..., help="dataset folder (corpus.jsonl + questions.jsonl)")
JsonOpt = typer.Option(False, "--json", help="print one JSON object on stdout")
SeedOpt = typer.Option(0, "--seed", help="seed of the question sample")
EmbedderOpt = typer.Option(None, "--embedder", help="embedder (default: the configured one)")
ChunkOpt = typer.Option(None, "--chunk-size", help="chunk size in characters")
OverlapOpt = typer.Option(None, "--chunk-overlap", help="chunk overlap in characters")
TitlesOpt = typer.Option(False, "--titles/--no-titles", help="put each item's title above its text")
WorkOpt = typer.Option(None, "--work-dir", help="keep the evaluation knowledge bases here and reuse them")
OutOpt = typer.Option(None, "--out", help="report folder (default: <home>/eval)")
LimitOpt = typer.Option(None, "--limit", help="a fixed-seed sample of this many questions (per set)")
SplitOpt = typer.Option("all", "--split", help="all, or the dev / test half of the questions (choose on dev, "
                        "confirm on test)")


def _load(path: Path) -> Dataset:
    try:
        return datasets.load(path)
    except DatasetError as e:
        fail(str(e))


def _modes(spec: str) -> list[str]:
    modes = [m.strip() for m in spec.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        fail(f"unknown mode {bad[0] if bad else spec!r}; use {', '.join(MODES)}")
    return modes


def _split(questions: list[Any], part: str) -> list[Any]:
    try:
        return datasets.split(questions, part)
    except DatasetError as e:
        fail(str(e))


def _written(paths: dict[str, Path]) -> None:
    err_console.print(f"report: {paths['md']} (+ .json, .png)", highlight=False)


# ---------------------------------------------------------------- convert


ArticlesOpt = typer.Option(None, "--articles", help="keep only this many articles (seeded) and their questions")


@convert_app.command("squad")
def convert_squad(file: Path, out: Path, articles: int = ArticlesOpt, seed: int = SeedOpt) -> None:
    """SQuAD v1.1 JSON -> dataset folder (corpus = paragraphs, gold = the question's paragraph)."""
    _convert(lambda: datasets.convert_squad(file, out, articles, seed), out)


@convert_app.command("cmrc")
def convert_cmrc(file: Path, out: Path, articles: int = ArticlesOpt, seed: int = SeedOpt) -> None:
    """CMRC 2018 JSON (SQuAD style, Chinese) -> dataset folder."""
    _convert(lambda: datasets.convert_cmrc(file, out, articles, seed), out)


@convert_app.command("rgb")
def convert_rgb(file: Path, out: Path) -> None:
    """RGB's zh_int.json (multi-part Chinese news questions, JSON lines) -> dataset folder with parts."""
    _convert(lambda: datasets.convert_rgb(file, out), out)


@convert_app.command("beir")
def convert_beir(folder: Path, out: Path,
                 split: str = typer.Option("test", "--split", help="qrels/<split>.tsv")) -> None:
    """BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) -> dataset folder."""
    _convert(lambda: datasets.convert_beir(folder, out, split), out)


def _convert(run: Callable[[], Dataset], out: Path) -> None:
    try:
        ds = run()
    except DatasetError as e:
        fail(str(e))
    console.print(f"{out}: {len(ds.corpus)} corpus items, {len(ds.questions)} questions ({ds.language})",
                  highlight=False)


# ---------------------------------------------------------------- retrieval


@app.command(context_settings={"allow_extra_args": True})
def retrieval(
    ctx: typer.Context,
    dataset: Path = DatasetArg,
    as_json: bool = JsonOpt,
    limit: int = LimitOpt,
    seed: int = SeedOpt,
    split: str = SplitOpt,
    embedder: str = EmbedderOpt,
    chunk_size: int = ChunkOpt,
    chunk_overlap: int = OverlapOpt,
    top_k: int = typer.Option(None, "--top-k", help="also report hit@K and recall@K for this K"),
    titles: bool = TitlesOpt,
    modes: str = typer.Option(",".join(MODES), "--modes", help="search modes to compare"),
    bm25_weight: float = typer.Option(None, "--bm25-weight", help="hybrid fusion weight of BM25"),
    dense_weight: float = typer.Option(None, "--dense-weight", help="hybrid fusion weight of dense search"),
    grid: list[str] = typer.Option(None, "--grid", help="sweep, e.g. --grid chunk_size=300,500,800 top_k=3,5"),
    metric: str = typer.Option("hit@top_k", "--metric", help="what ranks the sweep's rows"),
    work_dir: Path = WorkOpt,
    out: Path = OutOpt,
) -> None:
    """Retrieval quality (hit@k, MRR@10, nDCG@10, recall@k, latency) of BM25, dense and hybrid search."""
    from zhiku.eval.retrieval import run_retrieval
    from zhiku.eval.sweep import run_sweep

    settings = cli_settings(embedder=embedder, chunk_size=chunk_size, chunk_overlap=chunk_overlap, top_k=top_k,
                    bm25_weight=bm25_weight, dense_weight=dense_weight)
    extra = list(ctx.args)
    if extra and (not grid or any("=" not in a for a in extra)):
        fail(f"unexpected arguments: {' '.join(extra)}")
    ds = _load(dataset)
    questions = datasets.sample(_split(ds.questions, split), limit, seed)
    config = ingest_config(settings, titles=titles)
    out_dir = out or settings.home / "eval"
    try:
        with _progress() as progress:
            if grid:
                spec = parse_grid([*grid, *extra])
                if titles and "titles" not in spec:
                    spec["titles"] = [True]
                result = run_sweep(settings, ds, questions, spec, _modes(modes), metric, work_dir, progress)
            else:
                ks = sorted(set(RANK_KS) | ({top_k} if top_k else set()))
                result = run_retrieval(settings, ds, questions, config, _modes(modes), ks, work_dir, progress)
    except (GridError, KBError, ModelError) as e:
        fail(str(e))
    result.update(limit=limit, seed=seed, split=split)
    paths = report.write(out_dir, "sweep" if grid else "retrieval", ds.name, result)
    if as_json:
        shown = {k: result[k] for k in ("grid", "metric", "rows")} if grid else result["modes"]
        print(json.dumps(shown, ensure_ascii=False))
    else:
        console.print(report.sweep_markdown(result) if grid else report.retrieval_markdown(result))
        if not grid:
            ing = result["ingest"]
            how = "reused" if ing["reused"] else f"ingested in {ing['seconds']:.0f} s"
            console.print(f"{ds.name}: {result['questions'] - result['questions_without_gold']} questions, "
                          f"{ing['documents']} documents, {ing['chunks']} chunks ({how})", highlight=False)
    _written(paths)


# ---------------------------------------------------------------- answers


@app.command(context_settings={"allow_extra_args": True})
def answers(
    ctx: typer.Context,
    dataset: Path = DatasetArg,
    model: list[str] = typer.Option(None, "--model", "-m", help="model pack or .gguf; repeat to compare"),
    as_json: bool = JsonOpt,
    limit: int = typer.Option(200, "--limit", help="size of the fixed-seed question sample"),
    seed: int = SeedOpt,
    split: str = SplitOpt,
    contexts: str = typer.Option(None, "--contexts", help="gold, retrieved, noisy, negative, none, "
                                 "counterfactual (default: gold,retrieved,negative,none; counterfactual for "
                                 "--kind counterfactual)"),
    kind: str = typer.Option("single", "--kind", help="single (as the set has them), two-part (two questions "
                             "about one paragraph joined), counterfactual (a changed year, number or name: "
                             "the gold paragraph no longer answers)"),
    replay: Path = typer.Option(None, "--replay", help="answer each question with the passages another run's "
                                "--log gave it in each context (a paired comparison; no search)"),
    live: bool = typer.Option(False, "--live", help="answer exactly as configured (the check applied as the "
                              "product answers, e.g. with escalation) instead of logging its signals and "
                              "applying it in the summary"),
    top_k: int = typer.Option(None, "--top-k", help="chunks retrieved into the prompt"),
    mode: str = typer.Option("hybrid", "--mode", help="search mode for the retrieved chunks"),
    prompt: str = typer.Option("default", "--prompt", help="kb template name in prompts.toml"),
    embedder: str = EmbedderOpt,
    chunk_size: int = ChunkOpt,
    chunk_overlap: int = OverlapOpt,
    titles: bool = TitlesOpt,
    bm25_weight: float = typer.Option(None, "--bm25-weight", help="hybrid fusion weight of BM25"),
    dense_weight: float = typer.Option(None, "--dense-weight", help="hybrid fusion weight of dense search"),
    max_tokens: int = typer.Option(64, "--max-tokens", help="reply length cap"),
    check_model: bool = typer.Option(False, "--check-model", help="also log the model's own P(yes) verdict on "
                                     "each answer (answer_check_p; costs a short extra prompt per reply)"),
    threads: int = typer.Option(None, "--threads", help="CPU threads for the model (0 = all)"),
    ctx_size: int = typer.Option(None, "--ctx", help="context window in tokens"),
    grid: list[str] = typer.Option(None, "--grid", help="sweep, e.g. --grid top_k=3,5 prompt=default,short"),
    log: Path = typer.Option(None, "--log", help="append each scored reply here as it comes (JSON lines); "
                          "a rerun with the same log resumes: replies in it are not asked again"),
    work_dir: Path = WorkOpt,
    out: Path = OutOpt,
) -> None:
    """Answer quality through the product's KB QA path: EM / F1 / contains with 95% intervals, false refusals,
    negative rejection and citation support, for gold, retrieved, noisy, negative and no context."""
    from zhiku.eval.answer_sweep import parse_answer_grid, run_answer_grid
    from zhiku.eval.answers import CONTEXTS, Options, run_answers
    from zhiku.eval.kinds import KINDS, derive

    settings = cli_settings(embedder=embedder, chunk_size=chunk_size, chunk_overlap=chunk_overlap, top_k=top_k,
                            threads=threads, ctx=ctx_size, parallel=1, bm25_weight=bm25_weight,
                            dense_weight=dense_weight)
    if kind not in KINDS:
        fail(f"--kind takes {', '.join(KINDS)}")
    contexts = contexts or ("counterfactual" if kind == "counterfactual" else "gold,retrieved,negative,none")
    chosen = [c.strip() for c in contexts.split(",") if c.strip()]
    if not chosen or any(c not in CONTEXTS for c in chosen):
        fail(f"--contexts takes {', '.join(CONTEXTS)}")
    if ("counterfactual" in chosen) != (kind == "counterfactual") or (kind == "counterfactual" and len(chosen) > 1):
        fail("the counterfactual context goes with --kind counterfactual, and only it")
    _modes(mode)
    extra = list(ctx.args)
    if extra and (not grid or any("=" not in a for a in extra)):
        fail(f"unexpected arguments: {' '.join(extra)}")
    ds = _load(dataset)
    # kinds are built from the chosen half, so a derived question never mixes dev and test questions
    base = [q for q in _split(ds.questions, split) if q.answers]
    questions = datasets.sample(derive(kind, ds, base, seed), limit, seed)
    if not questions:
        fail(f"{dataset}: no question of kind {kind} with reference answers")
    options = Options(top_k=settings.top_k, mode=mode, prompt=prompt, max_tokens=max_tokens,
                      check=settings.answer_check, check_model=check_model or settings.answer_check_p > 0,
                      live=live, replay=str(replay) if replay else None)
    config = ingest_config(settings, titles=titles)
    models = model or [settings.model]
    try:
        with _progress() as progress:
            if grid:
                spec = parse_answer_grid([*grid, *extra])
                result = run_answer_grid(settings, ds, questions, models, chosen, options, spec, work_dir, seed,
                                         progress)
            else:
                result = run_answers(settings, ds, questions, models, chosen, options, config, work_dir, seed,
                                     progress, log)
    except (GridError, KBError, ModelError) as e:
        fail(str(e))
    result.update(limit=limit, seed=seed, split=split, questions=len(questions), question_kind=kind)
    kind = "answer-sweep" if grid else "answers"
    paths = report.write(out or settings.home / "eval", kind, ds.name, result)
    if as_json:
        print(json.dumps(result["rows"] if grid else result["models"], ensure_ascii=False, default=str))
    else:
        console.print(report.answer_sweep_markdown(result) if grid else report.answers_markdown(result))
    _written(paths)


# ---------------------------------------------------------------- fusion


@app.command()
def fusion(
    dataset: list[Path] = typer.Argument(..., help="dataset folders: the weight must hold on every one"),
    weights: str = typer.Option("0.25,0.5,0.75,1,1.5", "--weights", help="BM25 weights to try (dense weight 1)"),
    limit: int = LimitOpt,
    seed: int = SeedOpt,
    split: str = SplitOpt,
    work_dir: Path = WorkOpt,
    out: Path = OutOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Hybrid fusion weights against BM25 and dense alone on several sets at once (hit@5, MRR@10)."""
    from zhiku.eval.fusion import evaluate_fusion

    settings = cli_settings()
    try:
        ws = [float(w) for w in weights.split(",") if w.strip()]
    except ValueError:
        fail(f"--weights takes numbers, e.g. 0.5,1,2 (got {weights!r})")
    sets = []
    for path in dataset:
        ds = _load(path)
        sets.append((ds, datasets.sample(_split(ds.questions, split), limit, seed)))
    try:
        with _progress() as progress:
            result = evaluate_fusion(settings, sets, ws, work_dir, progress)
    except (KBError, ModelError) as e:
        fail(str(e))
    result.update(limit=limit, seed=seed, split=split)
    paths = report.write(out or settings.home / "eval", "fusion", "+".join(ds.name for ds, _ in sets), result)
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        console.print(report.fusion_markdown(result))
    _written(paths)


@app.command("summary")
def summary(
    log: Path = typer.Argument(..., help="a --log file of `zhiku eval answers` (JSON lines, one scored reply each)"),
    name: str = typer.Option(None, "--name", help="dataset name in the report (default: the log's stem)"),
    anchor: float = typer.Option(None, "--check-anchor", min=0.0, max=1.0,
                                 help="apply the answer check at this anchoring (default: answer_check_anchor)"),
    p_yes: float = typer.Option(None, "--check-p", min=0.0, max=1.0,
                                help="... and this P(yes) (default: answer_check_p)"),
    dataset: Path = typer.Option(None, "--dataset", help="the log's dataset folder: judges a log written before "
                                 "rows carried their references (and rejudges every row)"),
    recheck: bool = typer.Option(False, "--recheck", help="measure each reply's anchoring again with this "
                                 "version's answer check (from the logged reply, question and passages)"),
    seed: int = SeedOpt,
    out: Path = OutOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The answer report (intervals, rates, targets) of the replies in a log, also of a run stopped early."""
    from zhiku.eval.answer_summary import check_of, summarise
    from zhiku.eval.rescore import fill, rechecked, rescore

    settings = cli_settings()  # settings first: a bad one is reported before any work
    out = out or settings.home / "eval"
    check = check_of(settings) or (0.0, 0.0)
    check = (check[0] if anchor is None else anchor, check[1] if p_yes is None else p_yes)
    try:
        rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as e:
        fail(f"{log}: not a readable JSON-lines log ({e})")
    if not rows or any("context" not in r or "model" not in r for r in rows):
        fail(f"{log}: no scored replies (each line needs 'model' and 'context')")
    if dataset is not None:
        rows = fill(rows, _load(dataset))
    elif any("parts" not in r for r in rows):
        fail(f"{log}: rows without their references (an older log); give its dataset with --dataset")
    else:
        rows = [{**r, **rescore(r)} for r in rows]  # the scorer of this version
    if recheck:
        rows = [{**r, "anchor": rechecked(r)} for r in rows]
    contexts = list(dict.fromkeys(r["context"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    result: dict[str, Any] = {"contexts": contexts, "seed": seed, "log": str(log), "replies": {}, "models": {}}
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        # a run stopped mid-question: keep only questions answered in every context
        done = [q for q in dict.fromkeys(r["id"] for r in mine)
                if {r["context"] for r in mine if r["id"] == q} >= set(contexts)]
        mine = [r for r in mine if r["id"] in set(done)]
        result["replies"][model] = mine
        result["models"][model] = summarise(mine, contexts, seed, check)
        result["models"][model]["questions_complete"] = len(done)
    paths = report.write(out, "answers", name or log.stem, result)
    if as_json:
        print(json.dumps(result["models"], ensure_ascii=False, default=str))
    else:
        console.print(report.answers_markdown(result))
    _written(paths)


README_START, README_END = "<!-- answers21:start -->", "<!-- answers21:end -->"


@app.command("table")
def table(
    logs: list[Path] = typer.Argument(..., exists=True, dir_okay=False,
                                      help="run logs named <pipeline>-<set>-<kind>.jsonl"),
    readme: Path = typer.Option(None, "--readme", help=f"replace the block between {README_START} and "
                                f"{README_END} in this file"),
    baseline: str = typer.Option("baseline", "--baseline", help="the pipeline answer times are compared with "
                                 "(comma-separated: the first that has the same rows)"),
    default: str = typer.Option("balanced", "--default", help="the pipeline the targets are stated for"),
    out: Path = OutOpt,
) -> None:
    """The answer table of several run logs (rates with intervals, answer times, targets) for the README."""
    from zhiku.eval.answer_summary import check_of
    from zhiku.eval.table import build

    settings = cli_settings()
    try:
        block, figures = build(logs, check_of(settings) or (0.0, 0.0), baseline, default)
    except (OSError, ValueError, KeyError) as e:
        fail(f"not a run log: {e}")
    report.write(out or settings.home / "eval", "answer-table", default, {"figures": figures, "block": block,
                                                                          "logs": [str(p) for p in logs]})
    if readme is not None:
        text = readme.read_text(encoding="utf-8")
        if README_START not in text or README_END not in text:
            fail(f"{readme}: no {README_START} ... {README_END} block")
        head, rest = text.split(README_START, 1)
        readme.write_text(f"{head}{README_START}\n{block}\n{README_END}{rest.split(README_END, 1)[1]}",
                          encoding="utf-8")
    console.print(block, highlight=False, soft_wrap=True)
