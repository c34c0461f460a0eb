"""Two-phase ingestion for `zhiku bench kb`: time from upload to BM25-searchable and to fully embedded, against
today's one-phase ingestion (every chunk embedded before its file is committed: `kb add --wait`), same data,
same run, alternating; and a chat's decode tok/s while the background worker embeds, beside idle.

Data: real text (SQuAD v1.1 + CMRC 2018 dev paragraphs, _kb_corpus.write_corpus): one document of about
500 chunks (the articles joined into one .txt) and a base of about 5,000 chunks (one file per article;
--quick: 2,000). Embedder: use-m3 by default (the fast one: two-phase's own overhead weighs most against it),
or `--embedder e5-small` (the default embedder, ~30x slower: run it on part of the cases, `--only document`,
with fewer repetitions, to keep a locked run under 15 minutes). "Searchable" is when the add call returns in the two-phase
mode (every file committed with its full-text index); "embedded" is when the background worker
(kb/embedding.py, its own thread, as in a server) has stored the last vector. One-phase: both are the return
of the add call.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from zhiku.config import Settings

from ._kb_corpus import write_corpus

EMBEDDER = "use-m3"
# Characters of corpus text per chunk with the default splitter (500/100): measured on this corpus (short
# paragraphs end chunks early), so that "500 chunks" comes out near 500 (a stride of 400 gave 746).
STRIDE = 265


def _document(folder: Path, chunks: int) -> Path:
    """One .txt of about `chunks` chunks: the corpus's articles joined."""
    parts = folder / "parts"
    write_corpus(parts, chunks * STRIDE)
    doc = folder / "document.txt"
    doc.write_text("\n\n".join(f.read_text(encoding="utf-8") for f in sorted(parts.iterdir())), encoding="utf-8")
    return doc


def _one_phase(svc: Any, name: str, path: Path, embedder: str) -> dict[str, float]:
    svc.create(name, embedder=embedder)
    t0 = time.perf_counter()
    docs = svc.add_files(name, [path], wait=True)
    done = time.perf_counter() - t0
    return {"chunks": sum(d.chunk_count for d in docs), "searchable_s": done, "embedded_s": done}


def _two_phase(svc: Any, name: str, path: Path, embedder: str) -> dict[str, float]:
    svc.create(name, embedder=embedder)
    t0 = time.perf_counter()
    stored: list[float] = []  # when each of the worker's batches was stored: the last one is "embedded"
    embed_batch = svc.embedding.embed_batch

    def timed(kb: Any, size: int | None = None) -> int:
        n = embed_batch(kb, size)
        if n and kb.name == name:
            stored.append(time.perf_counter())
        return n

    svc.embedding.embed_batch = timed
    try:
        docs = svc.add_files(name, [path], wait=False)  # queues the chunks and wakes the worker
        searchable = time.perf_counter() - t0
        # A slow look (twice a second): a 20 Hz status poll took CPU from the embedder it was timing.
        while not svc.embedding.status(name).complete:
            time.sleep(0.5)
    finally:
        svc.embedding.embed_batch = embed_batch
    return {"chunks": sum(d.chunk_count for d in docs), "searchable_s": searchable, "embedded_s": stored[-1] - t0}


def bench_decode(work: Path, quick: bool, embedder: str = EMBEDDER, reps: int | None = None) -> dict[str, Any]:
    """The decode measure alone (its base written as in bench_phases)."""
    from zhiku.kb.service import KBService

    settings = Settings(home=work / "home-phases", embedder=embedder, ui=False)
    write_corpus(work / "base", (2000 if quick else 5000) * STRIDE)
    svc = KBService(settings)
    svc.embedding.start()
    try:
        return {"embedder": embedder, "decode_during_embedding": _decode_during_embedding(
            svc, work / "base", reps or (2 if quick else 3), embedder)}
    finally:
        svc.close()


def bench_phases(work: Path, quick: bool, log: Any = print, embedder: str = EMBEDDER, only: str | None = None,
                 reps: int | None = None, decode_reps: int | None = None) -> dict[str, Any]:
    """`only`: "document" or "base" (else both); `reps`: repetitions of each case (default 3 for the document,
    2 for the base); `decode_reps` 0 skips the decode measure."""
    from zhiku.kb.service import KBService

    settings = Settings(home=work / "home-phases", embedder=embedder, ui=False)
    base = 2000 if quick else 5000
    cases: dict[str, tuple[Path, int]] = {}
    if only in (None, "document"):
        cases["document_500"] = (_document(work / "doc500", 500), reps or 3)
    write_corpus(work / "base", base * STRIDE)
    if only in (None, "base"):
        cases[f"base_{base}"] = (work / "base", reps or 2)
    svc = KBService(settings)
    svc.ctx.embedder(embedder).embed_passages(["warm up 预热"] * 4)  # model loaded before any timing
    svc.store.index_form("预热的分词词典 warm up")  # and jieba's dictionary, which the first ingestion would load
    svc.embedding.start()
    out: dict[str, Any] = {"embedder": embedder}
    try:
        for case, (path, n) in cases.items():
            runs: dict[str, list[dict[str, float]]] = {"one_phase": [], "two_phase": []}
            for rep in range(n):
                # ABBA: drift in the machine's load during the run favours neither.
                order = [("one_phase", _one_phase), ("two_phase", _two_phase)]
                for key, fn in order if rep % 2 == 0 else order[::-1]:
                    name = f"{case}-{key}-{rep}"
                    runs[key].append(fn(svc, name, path, embedder))
                    svc.delete(name)
                    log(f"  {case} {key}: {runs[key][-1]}")
            med = {k: {m: statistics.median(r[m] for r in v) for m in ("searchable_s", "embedded_s")}
                   for k, v in runs.items()}
            out[case] = {"chunks": runs["one_phase"][0]["chunks"], "reps": n, "median": med, "runs": runs,
                         "searchable_ratio": med["two_phase"]["searchable_s"] / med["one_phase"]["searchable_s"],
                         "embedded_ratio": med["two_phase"]["embedded_s"] / med["one_phase"]["embedded_s"]}
        decode = (2 if quick else 3) if decode_reps is None else decode_reps
        if decode:
            out["decode_during_embedding"] = _decode_during_embedding(svc, work / "base", decode, embedder)
    finally:
        svc.close()
    return out


def _decode_during_embedding(svc: Any, path: Path, reps: int, embedder: str = EMBEDDER) -> dict[str, Any]:
    """Decode tok/s of one chat stream (the configured model; 2 threads), idle and while the background
    worker embeds a base, alternating; the core-sharing policy on (llm/cores.py), as zhiku runs."""
    from zhiku import packs
    from zhiku.config import load_settings
    from zhiku.llm.base import GenerationParams
    from zhiku.llm.cores import CORES
    from zhiku.llm.llama_cpp import LlamaCppModel

    from ._serving import prompt

    conf = load_settings()
    model = LlamaCppModel(packs.resolve(conf.models_path, conf.model), "bench", n_ctx=1024, n_threads=2, parallel=1,
                          prefix_cache=False, threads_hint=lambda: CORES.generation_threads(2),
                          on_busy=CORES.generation)

    def decode_tps() -> float:
        first = last = 0.0
        n = 0
        for d in model.chat(prompt(0), GenerationParams(max_tokens=128, temperature=0.0)):
            if d.text:
                last = time.perf_counter()
                first = first or last
                n += 1
        return (n - 1) / (last - first)

    out: dict[str, list[float]] = {"idle": [], "background_embedding": []}
    try:
        decode_tps()  # warm
        for rep in range(reps):
            out["idle"].append(decode_tps())
            name = f"decode-{rep}"
            svc.create(name, embedder=embedder)
            svc.add_files(name, [path], wait=False)
            while svc.embedding.status(name).embedded == 0:  # the worker is under way
                time.sleep(0.05)
            out["background_embedding"].append(decode_tps())
            still = not svc.embedding.status(name).complete  # the chat ran entirely during embedding
            svc.delete(name)  # the worker's next batch finds nothing (its vectors are dropped as stale)
            if not still:
                out.setdefault("warnings", []).append(f"rep {rep}: embedding ended before the chat did")  # type: ignore[arg-type]
    finally:
        model.close()
    med = {k: statistics.median(v) for k, v in out.items() if k != "warnings"}
    return {"model": conf.model, "decode_tps_median": med, "ratio": med["background_embedding"] / med["idle"],
            "runs": out}


def plot(phases: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [c for c, r in phases.items() if isinstance(r, dict) and "median" in r]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.2
    for i, (key, phase, color) in enumerate((("one_phase", "searchable_s", "#c63"), ("two_phase", "searchable_s", "#2a7"),
                                             ("one_phase", "embedded_s", "#e96"), ("two_phase", "embedded_s", "#7c9"))):
        values = [phases[c]["median"][key][phase] for c in cases]
        ax.bar([j + (i - 1.5) * width for j in range(len(cases))], values, width,
               label=f"{key.replace('_', '-')}: {phase.removesuffix('_s')}", color=color)
    ax.set_xticks(range(len(cases)), [f"{c} ({phases[c]['chunks']} chunks)" for c in cases])
    ax.set_ylabel("seconds from upload (median)")
    ax.set_yscale("log")
    ax.set_title(f"upload to searchable and to embedded ({phases.get('embedder')})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def readme_rows(phases: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    emb = phases.get("embedder", EMBEDDER)
    for case, r in phases.items():
        if not isinstance(r, dict) or "median" not in r:
            continue
        one, two = r["median"]["one_phase"], r["median"]["two_phase"]
        rows.append({"measure": f"upload to BM25-searchable s, {case.replace('_', ' ')} ({r['chunks']} chunks, {emb})",
                     "value": f"{two['searchable_s']:.3g}",
                     "baseline": f"{one['searchable_s']:.4g} one-phase ({r['searchable_ratio']:.3f}×; target <= 0.1×)"})
        rows.append({"measure": f"upload to fully embedded s, {case.replace('_', ' ')} ({r['chunks']} chunks, {emb})",
                     "value": f"{two['embedded_s']:.4g}",
                     "baseline": f"{one['embedded_s']:.4g} one-phase ({r['embedded_ratio']:.3f}×; target <= 1.05×)"})
    dec = phases.get("decode_during_embedding")
    if dec:
        med = dec["decode_tps_median"]
        rows.append({"measure": f"chat decode tok/s during background embedding ({dec['model']}, {emb})",
                     "value": f"{med['background_embedding']:.3g}",
                     "baseline": f"{med['idle']:.3g} idle ({dec['ratio']:.2f}×; target >= 0.5×)"})
    return rows


def main(argv: list[str]) -> None:
    import argparse
    import json
    import shutil
    import tempfile

    from .report import save_area

    ap = argparse.ArgumentParser(prog="python -m bench._kb_phases")
    ap.add_argument("--quick", action="store_true", help="a 2,000-chunk base instead of 5,000")
    ap.add_argument("--decode-only", action="store_true", help="only the decode measure")
    ap.add_argument("--embedder", default=EMBEDDER)
    ap.add_argument("--only", choices=("document", "base"), help="one case (the decode measure still runs)")
    ap.add_argument("--reps", type=int, help="repetitions of each case (3 for the document, 2 for the base)")
    ap.add_argument("--decode-reps", type=int, help="decode repetitions (0: none)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="zhiku-bench-phases-"))
    try:
        if args.decode_only:
            result = bench_decode(work, args.quick, args.embedder, args.decode_reps)
        else:
            result = bench_phases(work, args.quick, lambda m: print(m, flush=True), args.embedder, args.only,
                                  args.reps, args.decode_reps)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1, default=str))
    save_area(Path(__file__).resolve().parent / "results", "kb-phases",
              {"quick": args.quick, "argv": argv, "phases": result, "readme": readme_rows(result)},
              lambda png: plot(result, png))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
