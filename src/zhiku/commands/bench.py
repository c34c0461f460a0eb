"""zhiku bench llm|kb|chat|ocr|<area>|all [--quick]

Each area is `bench/<area>.py` in the source tree with `run(quick, out_dir) -> dict` (the bench contract);
`all` runs every such module, llm, kb and chat first.
The bench folder is not part of the installed package, so it is found next to the source checkout (or given
with --bench-dir) and imported as the package `bench`.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import typer

from zhiku.commands.common import cli_settings, console, err_console, fail

FIRST = ("llm", "kb", "chat")
NOT_AREAS = {"report"}

app = typer.Typer()


def find_bench_dir(given: Path | None) -> Path:
    candidates = [given] if given else [Path.cwd() / "bench", Path(__file__).resolve().parents[3] / "bench"]
    for c in candidates:
        if c is not None and (c / "report.py").is_file():
            return c.resolve()
    fail("no bench folder found: run from the zhiku source checkout or pass --bench-dir")


def is_running_checkout(repo: Path) -> bool:
    """True when `repo` is the source checkout the running zhiku is imported from (an editable install):
    only then is its README ours to rewrite, not a README that happens to sit next to some bench folder."""
    import zhiku

    running = Path(zhiku.__file__).resolve().parent
    return (repo / "pyproject.toml").is_file() and running == (repo / "src" / "zhiku").resolve()


def _import(bench_dir: Path, module: str) -> Any:
    root = str(bench_dir.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module(f"{bench_dir.name}.{module}")


def areas_in(bench_dir: Path) -> list[str]:
    """Modules of the bench folder that define run(quick, out_dir)."""
    found = []
    for path in bench_dir.glob("*.py"):
        if path.stem in NOT_AREAS or path.stem.startswith("_"):
            continue
        if callable(getattr(_import(bench_dir, path.stem), "run", None)):
            found.append(path.stem)
    return sorted(found, key=lambda a: (FIRST.index(a) if a in FIRST else len(FIRST), a))


def machine_slug(cpu: str, cores: Any) -> str:
    words = re.sub(r"\(.*?\)|CPU|Processor|@.*", " ", cpu).split()[:3]
    return re.sub(r"[^a-z0-9]+", "-", " ".join(words).lower()).strip("-") + f"-{cores}c"


@app.callback(invoke_without_command=True, context_settings={"allow_interspersed_args": True})
def bench(
    area: str = typer.Argument("all", help="llm, kb, chat, ocr, another bench/<area>.py, or all"),
    quick: bool = typer.Option(False, "--quick", help="small, fast runs"),
    bench_dir: Path = typer.Option(None, "--bench-dir", help="the bench folder (default: the source checkout's)"),
    readme: bool = typer.Option(None, "--readme/--no-readme", show_default=False,
                                help="regenerate README.md's performance table (default: only in the source "
                                     "checkout this zhiku runs from)"),
) -> None:
    """Run benchmarks, write bench/results/<date>-<machine>.json and update the README table."""
    from zhiku.eval.report import machine

    cli_settings()  # a bad ZHIKU_* value: one line now, not a traceback in every area
    folder = find_bench_dir(bench_dir)
    ours = is_running_checkout(folder.parent)
    known = areas_in(folder)
    areas = known if area == "all" else [area]
    if any(a not in known for a in areas):
        fail(f"unknown area {area!r}; use {', '.join(known)} or all")
    out_dir = folder / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    info = machine()
    summaries: dict[str, Any] = {}
    for a in areas:
        err_console.print(f"bench {a}{' (quick)' if quick else ''} ...", highlight=False)
        started = time.perf_counter()
        try:
            summaries[a] = _import(folder, a).run(quick, out_dir)
        except Exception as e:  # one failing area must not lose the others' results
            err_console.print(traceback.format_exc(), highlight=False)
            summaries[a] = {"error": f"{type(e).__name__}: {e}"}
        err_console.print(f"bench {a}: {time.perf_counter() - started:.0f} s", highlight=False)
    combined = {"kind": "bench", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": quick, "machine": info,
                "areas": summaries}
    path = out_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{machine_slug(info['cpu'], info['cores'])}.json"
    path.write_text(json.dumps(combined, ensure_ascii=False, indent=1, default=str) + "\n", encoding="utf-8")
    console.print(f"results: {path}", highlight=False)
    if readme is None and not ours:
        err_console.print(f"{folder.parent / 'README.md'} left as it is: not the source checkout of the running "
                          "zhiku (--readme writes it anyway)", highlight=False)
    elif readme is not False:
        report = _import(folder, "report")
        target = folder.parent / "README.md"
        if report.update_readme(target, out_dir):
            console.print(f"updated the performance table in {target}", highlight=False)
        else:
            err_console.print(f"{target} has no {report.START} ... {report.END} markers; table not written",
                              highlight=False)
    failed = [a for a, s in summaries.items() if "error" in s]
    if failed:
        fail(f"failed: {', '.join(failed)}")
