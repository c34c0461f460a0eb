"""Raw embedder throughput: e5-small and use-m3 on knowledge-base-sized chunks, and how e5 uses the cores.

`zhiku bench embed` (or `python -m bench.embed`). Texts are SQuAD v1.1 dev (English) and CMRC 2018 dev
(Chinese) paragraphs from ../shared/evaldata, cut into 500-character chunks like the default splitter's,
half and half. The e5-small baseline in the same run is the plain way to call the engine: one batch call
with OpenMP on all cores; it is compared with zhiku's default (one single-threaded call per core) and
with one core alone. Writes embed-<stamp>.json and .png under the results folder.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from zhiku.embed.batching import raw_throughput
from zhiku.embed.e5 import E5Embedder
from zhiku.embed.use_m3 import USEEmbedder

EVALDATA = Path(__file__).resolve().parents[2] / "shared" / "evaldata"
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


def run(quick: bool, out_dir: Path) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    e5_texts = sample_texts(64 if quick else 192)
    use_texts = sample_texts(256 if quick else 1024)
    results: dict[str, dict[str, float]] = {}

    def measure(label: str, emb: Any, texts: list[str], batch: int | None = None) -> None:
        results[label] = raw_throughput(emb, texts, batch)
        r = results[label]
        print(f"  {label}: {r['passages_per_s']:.1f} passages/s, {r['cores_busy']:.2f} cores busy", flush=True)

    # e5: the plain call (OpenMP across all cores inside one call) is the baseline.
    measure("e5-small one call, all cores", E5Embedder(threads=cores, workers=1), e5_texts)
    default = E5Embedder(threads=cores)
    measure(f"e5-small {default.workers} calls x 1 thread (default)", default, e5_texts)
    if not quick:
        for batch in (8, 128):
            measure(f"e5-small default, batch {batch}", default, e5_texts, batch)
    measure("e5-small one core", E5Embedder(threads=1, workers=1), e5_texts[: len(e5_texts) // 2])
    default.close()

    measure(f"use-m3 {cores} threads", USEEmbedder(threads=cores), use_texts)
    measure("use-m3 one core", USEEmbedder(threads=1), use_texts[: len(use_texts) // 2])

    e5_default = results[f"e5-small {default.workers} calls x 1 thread (default)"]["passages_per_s"]
    e5_plain = results["e5-small one call, all cores"]["passages_per_s"]
    summary: dict[str, Any] = {
        "cores": cores,
        "texts": {"e5": len(e5_texts), "use": len(use_texts), "chunk_chars": CHUNK},
        "results": results,
        "readme": [
            {"measure": "e5-small passages/s (zhiku)", "value": e5_default,
             "baseline": f"{e5_plain:.1f} (one OpenMP call)"},
            {"measure": "e5-small speed-up over one OpenMP call", "value": e5_default / e5_plain},
            {"measure": "use-m3 passages/s", "value": results[f"use-m3 {cores} threads"]["passages_per_s"],
             "baseline": f"{results['use-m3 one core']['passages_per_s']:.1f} (one core)"},
        ],
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"embed-{stamp}.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    _plot(results, out_dir / f"embed-{stamp}.png", cores)
    return summary


def _plot(results: dict[str, dict[str, float]], path: Path, cores: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(results)
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(labels) + 1.2))
    bars = ax.barh(labels, [results[k]["passages_per_s"] for k in labels], color="#4c72b0")
    for bar, k in zip(bars, labels, strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                f" {results[k]['passages_per_s']:.1f}/s, {results[k]['cores_busy']:.2f} cores", va="center")
    ax.set_xscale("log")
    ax.set_xlabel("passages per second (500-character chunks, EN + ZH), log scale")
    ax.set_title(f"Raw embedder throughput on {cores} cores")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    print(json.dumps(run(quick=True, out_dir=Path(__file__).resolve().parent / "results"), indent=1))
