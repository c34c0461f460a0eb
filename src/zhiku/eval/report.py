"""Reports: one JSON file with everything, a Markdown table and a PNG plot per run."""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RETRIEVAL_COLUMNS = ["hit@1", "hit@3", "hit@5", "hit@10", "mrr@10", "ndcg@10", "recall@10",
                     "latency_ms_median"]
ANSWER_COLUMNS = ["em", "f1", "contains", "no_answer", "seconds_median"]


def stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def retrieval_markdown(result: dict[str, Any]) -> str:
    modes = result["modes"]
    return markdown_table(["mode", *RETRIEVAL_COLUMNS],
                          [[mode, *(m.get(c) for c in RETRIEVAL_COLUMNS)] for mode, m in modes.items()])


def answers_markdown(result: dict[str, Any]) -> str:
    rows = [[model, setting, *(m.get(c) for c in ANSWER_COLUMNS)]
            for model, settings in result["models"].items() for setting, m in settings.items()]
    return markdown_table(["model", "context", *ANSWER_COLUMNS], rows)


def sweep_markdown(result: dict[str, Any], limit: int = 30) -> str:
    varied = [k for k in result["grid"] if k != "top_k"]
    keys = ["rank", "mode", *varied, "top_k", "hit@top_k", "mrr@10", "ndcg@10", "latency_ms_median"]
    return markdown_table(keys, [[r.get(c) for c in keys] for r in result["rows"][:limit]])


def _plot_bars(path: Path, groups: dict[str, dict[str, float]], metrics: Sequence[str], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(metrics) + 2), 4))
    width = 0.8 / max(1, len(groups))
    for g, (label, values) in enumerate(groups.items()):
        xs = [i + g * width for i in range(len(metrics))]
        ax.bar(xs, [values.get(m, 0.0) or 0.0 for m in metrics], width, label=label)
    ax.set_xticks([i + width * (len(groups) - 1) / 2 for i in range(len(metrics))], list(metrics))
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def machine() -> dict[str, Any]:
    """CPU model, cores and memory of this machine, as stated next to every figure."""
    import os

    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "system": platform.system()}


def write(out_dir: Path, kind: str, name: str, result: dict[str, Any]) -> dict[str, Path]:
    """Write <kind>-<name>-<stamp>.json/.md/.png; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    base = out_dir / f"{kind}-{name}-{stamp()}"
    result = {**result, "machine": machine(), "kind": kind, "dataset": name}
    paths = {"json": base.with_suffix(".json"), "md": base.with_suffix(".md"), "png": base.with_suffix(".png")}
    paths["json"].write_text(json.dumps(result, ensure_ascii=False, indent=1, default=str) + "\n",
                             encoding="utf-8")
    if kind == "retrieval":
        table = retrieval_markdown(result)
        _plot_bars(paths["png"], result["modes"], RETRIEVAL_COLUMNS[:-1], f"retrieval: {name}")
    elif kind == "answers":
        table = answers_markdown(result)
        groups = {f"{model} / {setting}": m for model, settings in result["models"].items()
                  for setting, m in settings.items()}
        _plot_bars(paths["png"], groups, ["em", "f1", "contains", "no_answer"], f"answers: {name}")
    else:
        table = sweep_markdown(result)
        top = {f"#{r['rank']} {r['mode']} " + " ".join(f"{k}={r[k]}" for k in result["grid"]): r
               for r in result["rows"][:6]}
        _plot_bars(paths["png"], top, ["hit@top_k", "mrr@10", "ndcg@10"], f"sweep: {name}")
    m = result["machine"]
    paths["md"].write_text(f"# {kind}: {name}\n\n{table}\n\nMachine: {m['cpu']}, {m['cores']} cores, "
                           f"{m['memory_gib']} GiB.\n", encoding="utf-8")
    return paths
