"""The source tree keeps its shape: no import cycle between zhiku's modules, no module over 400 lines, and
the floors of DESIGN.md: no module imports one of a higher floor (and the web UI nothing from server/)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "zhiku"
MAX_LINES = 400
# Modules allowed over the limit, with the size they may not grow past (none today: split, don't list).
OVER_LIMIT: dict[str, int] = {}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(path: Path, known: dict[str, Path]) -> set[str]:
    """zhiku modules `path` imports anywhere (functions included), except under `if TYPE_CHECKING:`."""
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if "TYPE_CHECKING" in ast.unparse(node.test):
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(a.name for a in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.module and node.level == 0:
                # `from package import module` needs the module; the package is then only partly set up,
                # which Python allows, so it is not counted as a dependency on the package
                subs = {f"{node.module}.{a.name}" for a in node.names} & set(known)
                found.update(subs if len(subs) == len(node.names) else {node.module, *subs})

    Visitor().visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if m in known}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    assert graph["zhiku.server.security"], "the import scan found nothing: is the tree where it should be?"
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# The floors, lowest first, as DESIGN.md draws them: errors/config < db/packs/limits < llm/embed < kb < chat <
# eval/services < server/webui < commands. A module is on the floor of the longest prefix listed here.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("zhiku", "zhiku.errors", "zhiku.config", "zhiku.cjk"),
    ("zhiku.db", "zhiku.packs", "zhiku.limits", "zhiku.local_postgres"),
    ("zhiku.llm", "zhiku.embed", "zhiku.search_engines"),
    ("zhiku.kb",),
    ("zhiku.chat",),
    ("zhiku.eval", "zhiku.services", "zhiku.migrate"),
    ("zhiku.server", "zhiku.webui"),
    ("zhiku.commands", "zhiku.cli", "zhiku.__main__"),
)


def floor_of(module: str) -> int:
    best, floor = "", -1
    for n, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, floor = prefix, n
    return floor


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} (floor {floor_of(m)}) imports {d} (floor {floor_of(d)})"
                  for m, deps in graph.items() for d in deps if floor_of(d) > floor_of(m))


def test_no_module_imports_a_higher_floor() -> None:
    modules = _modules()
    assert all(floor_of(m) >= 0 for m in modules), [m for m in modules if floor_of(m) < 0]
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    assert _upward(graph) == []
    assert sorted(f"{m} imports {d}" for m, deps in graph.items() if m.startswith("zhiku.webui.")
                  for d in deps if d.startswith("zhiku.server")) == []


def test_the_floor_check_sees_an_import_upward() -> None:
    assert floor_of("zhiku.db") == 1 and floor_of("zhiku.chat.schema") == 4 and floor_of("zhiku") == 0
    assert _upward({"zhiku.db": {"zhiku.chat.schema", "zhiku.errors"}, "zhiku.chat.schema": {"zhiku.db"}}) == [
        "zhiku.db (floor 1) imports zhiku.chat.schema (floor 4)"]


def test_no_module_over_400_lines() -> None:
    long = {}
    for path in PACKAGE.rglob("*.py"):
        name = path.relative_to(SRC).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > OVER_LIMIT.get(name, MAX_LINES):
            long[name] = lines
    assert long == {}
