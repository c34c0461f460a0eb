"""The README's performance table, regenerated from the newest `zhiku bench` results.

`zhiku bench` writes one combined file per run, `bench/results/<date>-<machine>.json`:
{"kind": "bench", "date": ..., "machine": {"cpu", "cores", "memory_gib", ...}, "quick": bool,
 "areas": {area: summary dict | {"error": message}}}. For each area the newest file holding a good summary
wins; the table lines come from the summary's optional "readme" entry (a list of {"measure", "value",
"baseline"?} or a {measure: value} map), else from its numeric leaves.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

START = "<!-- bench:start -->"
END = "<!-- bench:end -->"
MAX_ROWS = 12


def save_area(out_dir: Path, area: str, summary: dict[str, Any], plot: Callable[[Path], None]) -> None:
    """One area's own record of a run, beside the combined file: <area>-<stamp>.json and its figure .png."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{area}-{stamp}.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    plot(out_dir / f"{area}-{stamp}.png")


def combined_results(results_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every combined bench file, newest first (by the date inside, then by name)."""
    found = []
    for path in results_dir.glob("*.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("kind") == "bench" and isinstance(data.get("areas"), dict):
            found.append((path, data))
    found.sort(key=lambda pd: (str(pd[1].get("date", "")), pd[0].name), reverse=True)
    return found


def newest_per_area(results_dir: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    newest: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path, data in combined_results(results_dir):
        for area, summary in data["areas"].items():
            if area not in newest and isinstance(summary, dict) and "error" not in summary:
                newest[area] = (path, data)
    return dict(sorted(newest.items()))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3g}"
    return str(v)


def _leaves(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(obj, dict):
        out: list[tuple[str, Any]] = []
        for k, v in obj.items():
            out += _leaves(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(obj, int | float) and not isinstance(obj, bool):
        return [(prefix, obj)]
    return []


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(measure, value, baseline) lines for one area's summary."""
    readme = summary.get("readme")
    if isinstance(readme, dict):
        return [(str(k), _fmt(v), "") for k, v in readme.items()][:MAX_ROWS]
    if isinstance(readme, list):
        return [(str(r.get("measure", "")), _fmt(r.get("value", "")), _fmt(r.get("baseline", "")))
                for r in readme if isinstance(r, dict)][:MAX_ROWS]
    return [(k, _fmt(v), "") for k, v in _leaves(summary) if not re.search(r"stamp|seed|path", k)][:MAX_ROWS]


def machine_line(m: dict[str, Any]) -> str:
    return f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('memory_gib', '?')} GiB RAM"


def render(results_dir: Path, repo: Path) -> str:
    newest = newest_per_area(results_dir)
    if not newest:
        return "No benchmark results yet: run `zhiku bench all`."
    lines = ["| area | measure | value | baseline |", "| --- | --- | --- | --- |"]
    sources: dict[str, dict[str, Any]] = {}
    for area, (path, data) in newest.items():
        sources[str(path.relative_to(repo) if path.is_relative_to(repo) else path)] = data
        for measure, value, baseline in summary_rows(data["areas"][area]):
            lines.append(f"| {area} | {measure} | {value} | {baseline} |")
    notes = [f"- `{name}`: {data.get('date', '?')}{' (--quick)' if data.get('quick') else ''}, "
             f"{machine_line(data.get('machine', {}))}" for name, data in sources.items()]
    return "\n".join(["Measured by `zhiku bench` on:", *notes, "", *lines])


def update_readme(readme: Path, results_dir: Path) -> bool:
    """Replace the text between the markers; False (and nothing written) when the markers are missing."""
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        return False
    body = render(results_dir, readme.parent)
    new = text[: start + len(START)] + "\n" + body + "\n" + text[end:]
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return True
