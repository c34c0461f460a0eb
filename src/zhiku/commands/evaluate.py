"""zhiku eval convert squad|cmrc|beir | retrieval | answers"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from zhiku.commands.common import cli_settings, console, err_console, fail
from zhiku.eval import datasets, report
from zhiku.eval.datasets import Dataset, DatasetError
from zhiku.eval.metrics import RANK_KS
from zhiku.eval.retrieval import MODES, ingest_config
from zhiku.eval.sweep import GridError, parse_grid
from zhiku.kb.types import KBError
from zhiku.llm.base import ModelError

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


def _load(path: Path) -> Dataset:
    try:
        return datasets.load(path)
    except DatasetError as e:
        fail(str(e))


@contextmanager
def _progress() -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar on stderr (stdout stays clean for --json); one bar per phase. Without a terminal
    (a background run writing a log) a plain line every tenth of each phase instead."""
    if not err_console.is_terminal:
        shown: dict[str, int] = {}

        def line(what: str, done: int, total: int) -> None:
            step = 10 * done // max(1, total)
            if shown.get(what, -1) < step:
                shown[what] = step
                err_console.print(f"{time.strftime('%H:%M:%S')} {what}: {done}/{total}", highlight=False)

        yield line
        return
    with Progress(TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err_console, transient=True) as progress:
        tasks: dict[str, Any] = {}

        def update(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = progress.add_task(what, total=total)
            progress.update(tasks[what], completed=done, total=total)

        yield update


def _modes(spec: str) -> list[str]:
    modes = [m.strip() for m in spec.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        fail(f"unknown mode {bad[0] if bad else spec!r}; use {', '.join(MODES)}")
    return modes


def _written(paths: dict[str, Path]) -> None:
    err_console.print(f"report: {paths['md']} (+ .json, .png)", highlight=False)


# ---------------------------------------------------------------- convert


@convert_app.command("squad")
def convert_squad(file: Path, out: Path) -> None:
    """SQuAD v1.1 JSON -> dataset folder (corpus = paragraphs, gold = the question's paragraph)."""
    _convert(lambda: datasets.convert_squad(file, out), out)


@convert_app.command("cmrc")
def convert_cmrc(file: Path, out: Path) -> None:
    """CMRC 2018 JSON (SQuAD style, Chinese) -> dataset folder."""
    _convert(lambda: datasets.convert_cmrc(file, out), out)


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
    limit: int = typer.Option(None, "--limit", help="evaluate a fixed-seed sample of this many questions"),
    seed: int = SeedOpt,
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
    questions = datasets.sample(ds.questions, limit, seed)
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
    result.update(limit=limit, seed=seed)
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


@app.command()
def answers(
    dataset: Path = DatasetArg,
    model: list[str] = typer.Option(None, "--model", "-m", help="model pack or .gguf; repeat to compare"),
    as_json: bool = JsonOpt,
    limit: int = typer.Option(30, "--limit", help="size of the fixed-seed question sample"),
    seed: int = SeedOpt,
    contexts: str = typer.Option("gold,retrieved,none", "--contexts", help="gold, retrieved, none"),
    top_k: int = typer.Option(None, "--top-k", help="chunks retrieved into the prompt"),
    mode: str = typer.Option("hybrid", "--mode", help="search mode for the retrieved setting"),
    embedder: str = EmbedderOpt,
    chunk_size: int = ChunkOpt,
    chunk_overlap: int = OverlapOpt,
    titles: bool = TitlesOpt,
    max_tokens: int = typer.Option(48, "--max-tokens", help="reply length cap"),
    threads: int = typer.Option(None, "--threads", help="CPU threads for the model (0 = all)"),
    ctx_size: int = typer.Option(None, "--ctx", help="context window in tokens"),
    work_dir: Path = WorkOpt,
    out: Path = OutOpt,
) -> None:
    """Answer quality (EM, F1, contains, no-answer rate) with the gold passage, retrieved chunks, no context."""
    from zhiku.eval.answers import CONTEXTS, run_answers

    settings = cli_settings(embedder=embedder, chunk_size=chunk_size, chunk_overlap=chunk_overlap, top_k=top_k,
                    threads=threads, ctx=ctx_size, parallel=1)
    chosen = [c.strip() for c in contexts.split(",") if c.strip()]
    if not chosen or any(c not in CONTEXTS for c in chosen):
        fail(f"--contexts takes {', '.join(CONTEXTS)}")
    _modes(mode)
    ds = _load(dataset)
    questions = datasets.sample([q for q in ds.questions if q.answers], limit, seed)
    if not questions:
        fail(f"{dataset}: no question has reference answers")
    config = ingest_config(settings, titles=titles)
    try:
        with _progress() as progress:
            result = run_answers(settings, ds, questions, model or [settings.model], chosen, settings.top_k, mode,
                                 config, work_dir, max_tokens, seed, progress)
    except (KBError, ModelError) as e:
        fail(str(e))
    result.update(limit=limit, seed=seed, questions=len(questions))
    paths = report.write(out or settings.home / "eval", "answers", ds.name, result)
    if as_json:
        print(json.dumps(result["models"], ensure_ascii=False))
    else:
        console.print(report.answers_markdown(result))
        hit = next((v for k, v in result["retrieval"].items() if k.startswith("retrieved_hit")), None)
        if hit is not None:
            console.print(f"gold passage among the retrieved top {settings.top_k}: {hit:.2f}", highlight=False)
    _written(paths)
