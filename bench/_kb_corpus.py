"""What the knowledge-base benches share: the real-text corpus (SQuAD v1.1 + CMRC 2018 dev paragraphs),
percentiles and peak memory."""

from __future__ import annotations

import json
import resource
from pathlib import Path

import numpy as np

from ._evaldata import EVALDATA


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(samples: list[float]) -> dict[str, float]:
    arr = np.asarray(samples) * 1000
    return {"p50_ms": round(float(np.percentile(arr, 50)), 3), "p99_ms": round(float(np.percentile(arr, 99)), 3),
            "mean_ms": round(float(arr.mean()), 3)}


def write_corpus(folder: Path, max_chars: int) -> int:
    """Articles as .txt files, English and Chinese alternating, until about max_chars characters."""
    folder.mkdir(parents=True, exist_ok=True)
    sets = []
    for rel in ("squad_v1.1_dev/dev-v1.1.json", "cmrc2018_dev/cmrc2018_dev.json"):
        data = json.loads((EVALDATA / rel).read_text(encoding="utf-8"))["data"]
        sets.append([("\n\n".join(p["context"] for p in art["paragraphs"]), art.get("title") or str(i))
                     for i, art in enumerate(data)])
    total, n = 0, 0
    for i in range(max(len(s) for s in sets)):
        for lang, articles in zip(("en", "zh"), sets, strict=True):
            if i < len(articles) and total < max_chars:
                text = articles[i][0]
                (folder / f"{lang}{i:03d}.txt").write_text(text, encoding="utf-8")
                total += len(text)
                n += 1
    return n
