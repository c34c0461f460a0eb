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
ANSWER_COLUMNS = ["right", "parts_found", "em", "f1", "contains", "refusal", "false_refusal", "rejection",
                  "cite_ok", "support_ok"]


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


def with_ci(m: dict[str, Any], key: str) -> str:
    """"0.62 (0.55–0.69)" for a metric with its interval, "–" when it was not measured."""
    if key not in m or m[key] is None or (isinstance(m[key], float) and math.isnan(m[key])):
        return "–"
    if f"{key}_lo" not in m:
        return fmt(m[key])
    return f"{m[key]:.2f} ({m[f'{key}_lo']:.2f}–{m[f'{key}_hi']:.2f})"


def answers_markdown(result: dict[str, Any]) -> str:
    header = ["model", "context", "n", *ANSWER_COLUMNS, "TTFT s", "total s", "total s p90", "prompt tokens"]
    rows = []
    for model, summary in result["models"].items():
        for context in result.get("contexts") or [c for c in summary if c not in ("compare", "targets")]:
            m = summary.get(context)
            if m is None:
                continue
            rows.append([model, context, m["questions"], *(with_ci(m, c) for c in ANSWER_COLUMNS),
                         fmt(m["ttft_ms_median"] / 1000), fmt(m["total_ms_median"] / 1000),
                         fmt(m.get("total_ms_p90", float("nan")) / 1000), fmt(m.get("prompt_tokens_median"))])
    lines = [markdown_table(header, rows), ""]
    for model, summary in result["models"].items():
        for name, c in summary.get("compare", {}).items():
            lines.append(f"- {model}: {name.replace('_', ' ')} = {c['ratio']:.2f} ({c['lo']:.2f}–{c['hi']:.2f}), "
                         f"{c['n']} questions")
        for name, t in summary.get("targets", {}).items():
            sign = ">=" if t["kind"] == "min" else "<="
            lines.append(f"- {model}: target {name} {sign} {t['threshold']}: {t['value']:.3f} "
                         f"({t['lo']:.2f}–{t['hi']:.2f}, n={t['n']}) {'met' if t['met'] else 'MISSED'}")
    for model, summary in result["models"].items():
        check = summary.get("check")
        if check:
            cols = ["signal", "threshold", "rejection", "false_refusal", "correct_lost", "gold_contains",
                    "retrieved_contains"]
            applied = "anchoring {:g}, P(yes) {:g}".format(*check["applied"]) if check["applied"] else "off"
            lines += ["", f"{model}: answer check applied above: {applied}; each signal alone by threshold "
                      "(point values):", "", markdown_table(cols, [[fmt(p.get(c)) for c in cols]
                                                                  for p in check["curve"]])]
    return "\n".join(lines)


def fusion_markdown(result: dict[str, Any]) -> str:
    cols = ["hit@1", "hit@5", "mrr@10", "ndcg@10", "margin"]
    parts = []
    for name, s in result["sets"].items():
        rows = [[mode, *(with_ci(m, c) if c in ("hit@5", "mrr@10") else m.get(c) for c in cols)]
                for mode, m in s["modes"].items()]
        parts.append(f"{name} ({s['questions']} questions)\n\n" + markdown_table(["mode", *cols], rows))
    parts.append(f"chosen BM25 weight (dense 1): {result['chosen_bm25_weight']:g}; worst margin over the better "
                 f"single mode per weight: {result['worst_margin']}")
    return "\n\n".join(parts)


def answer_sweep_markdown(result: dict[str, Any], limit: int = 30) -> str:
    keys = ["rank", *result["grid"], "model"]
    metrics = [k for k in result["rows"][0] if "." in k] if result["rows"] else []
    return markdown_table([*keys, *metrics, "targets_met"],
                          [[r.get(c) for c in [*keys, *metrics, "targets_met"]] for r in result["rows"][:limit]])


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
    base = f"{kind}-{name}-{stamp()}"
    result = {**result, "machine": machine(), "kind": kind, "dataset": name}
    # not with_suffix: a name may hold dots (qwen2.5-coder-0.5b)
    paths = {ext: out_dir / f"{base}.{ext}" for ext in ("json", "md", "png")}
    paths["json"].write_text(json.dumps(result, ensure_ascii=False, indent=1, default=str) + "\n",
                             encoding="utf-8")
    if kind == "retrieval":
        table = retrieval_markdown(result)
        _plot_bars(paths["png"], result["modes"], RETRIEVAL_COLUMNS[:-1], f"retrieval: {name}")
    elif kind == "answers":
        table = answers_markdown(result)
        groups = {f"{model} / {context}": m for model, summary in result["models"].items()
                  for context, m in summary.items() if context in (result.get("contexts") or summary)
                  and context not in ("compare", "targets") and isinstance(m, dict)}
        _plot_bars(paths["png"], groups, ["right", "contains", "refusal"], f"answers: {name}")
    elif kind == "answer-sweep":
        table = answer_sweep_markdown(result)
        metric = result["metric"]
        top = {f"#{r['rank']} " + " ".join(f"{k}={r[k]}" for k in result["grid"]): r for r in result["rows"][:6]}
        shown = [k for k in (metric, "negative.rejection", "gold.contains") if any(k in r for r in top.values())]
        _plot_bars(paths["png"], top, shown, f"answer sweep: {name}")
    elif kind == "answer-table":
        table = result["block"]
        groups = {k: {"right": v.get("right"), "rejection": v.get("rejection")} for k, v in result["figures"].items()}
        _plot_bars(paths["png"], groups, ["right", "rejection"], f"answers: {name}")
    elif kind == "fusion":
        table = fusion_markdown(result)
        groups = {f"{ds}: {mode}": m for ds, s in result["sets"].items() for mode, m in s["modes"].items()}
        _plot_bars(paths["png"], groups, ["hit@1", "hit@5", "mrr@10"], f"fusion: {name}")
    else:
        table = sweep_markdown(result)
        top = {f"#{r['rank']} {r['mode']} " + " ".join(f"{k}={r[k]}" for k in result["grid"]): r
               for r in result["rows"][:6]}
        _plot_bars(paths["png"], top, ["hit@top_k", "mrr@10", "ndcg@10"], f"sweep: {name}")
    m = result["machine"]
    paths["md"].write_text(f"# {kind}: {name}\n\n{table}\n\nMachine: {m['cpu']}, {m['cores']} cores, "
                           f"{m['memory_gib']} GiB.\n", encoding="utf-8")
    return paths
