"""The layout rules of docs/architecture.md, checked on the source text (nothing is imported).

A *package* here is the first name under ``taskgate``: ``taskgate.tasks.service`` belongs to
``tasks``, ``taskgate.app`` to ``app``. Every import counts, at module level or inside a
function or an ``if TYPE_CHECKING:`` block: a dependency is a dependency.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "taskgate"
MAX_LINES = 400
# What the runtime may build on. Everything else (tasks, workflows, destinations, approvals,
# schedules, triggers, runs, governance, identity, audit, events, ...) is a feature, or the
# assembly above them (app, api, jobs, cli), and the runtime knows none of them.
INFRASTRUCTURE = frozenset(
    {"db", "models", "settings", "errors", "logs", "ids", "clock", "timezones", "data_dir"}
    | {"master_secret", "outbound"}
)
# Calls that find code by its name at run time instead of importing it.
LOOKUPS_BY_NAME = frozenset({"import_module", "find_spec", "__import__"})


@dataclass(frozen=True)
class Edge:
    source: str  # the importing package
    target: str  # the imported package
    where: str  # file:line

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} ({self.where})"


def _files() -> Iterator[Path]:
    yield from sorted(SOURCE.rglob("*.py"))


def _module_of(path: Path) -> list[str]:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _top_level_names() -> set[str]:
    return {p.stem if p.suffix == ".py" else p.name for p in SOURCE.iterdir()} - {"__init__"}


def _imported(path: Path, tree: ast.AST) -> Iterator[tuple[str, int]]:
    """Every ``taskgate.…`` module name the file imports, with its line."""
    module = _module_of(path)
    package = module if path.name == "__init__.py" else module[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            yield name, node.lineno
            for alias in node.names:  # ``from taskgate import app`` names a module too
                yield f"{name}.{alias.name}", node.lineno


def _edges() -> list[Edge]:
    """One edge per pair of packages and importing file, at the file's first such import."""
    tops = _top_level_names()
    edges: dict[tuple[str, str, Path], Edge] = {}
    for path in _files():
        source = _module_of(path)
        if len(source) < 2:
            continue  # taskgate/__init__.py
        tree = ast.parse(path.read_text(), str(path))
        for name, line in _imported(path, tree):
            parts = name.split(".")
            if len(parts) < 2 or parts[0] != "taskgate" or parts[1] not in tops:
                continue
            key = (source[1], parts[1], path)
            if parts[1] != source[1] and key not in edges:
                where = f"{path.relative_to(SOURCE.parent)}:{line}"
                edges[key] = Edge(source[1], parts[1], where)
    return list(edges.values())


def _cycles(edges: list[Edge]) -> list[list[str]]:
    """The strongly connected groups of packages (Tarjan), each a set of mutual imports."""
    graph: dict[str, set[str]] = defaultdict(set)
    for edge in edges:
        graph[edge.source].add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_import_cycle_between_packages() -> None:
    edges = _edges()
    report = []
    for group in _cycles(edges):
        members = set(group)
        inside = sorted({str(e) for e in edges if e.source in members and e.target in members})
        report.append(f"{' <-> '.join(group)}:\n    " + "\n    ".join(inside))
    assert not report, "packages that import each other:\n" + "\n".join(report)


def test_runtime_imports_no_feature() -> None:
    wrong = [str(e) for e in _edges() if e.source == "runtime" and e.target not in INFRASTRUCTURE]
    assert not wrong, "the runtime imports beyond the infrastructure:\n" + "\n".join(wrong)


def test_no_service_found_by_name() -> None:
    found = []
    for path in _files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Name):
                names = {node.id}
            elif isinstance(node, ast.Attribute):
                names = {node.attr}
            elif isinstance(node, ast.ImportFrom):
                names = {alias.name for alias in node.names}
            else:
                continue
            if names & LOOKUPS_BY_NAME:
                found.append(f"{path.relative_to(SOURCE.parent)}:{node.lineno}")
    assert not found, "code found by its name instead of imported:\n" + "\n".join(found)


def test_no_file_over_the_limit() -> None:
    long = {
        str(path.relative_to(SOURCE.parent)): count
        for path in _files()
        if (count := len(path.read_text().splitlines())) > MAX_LINES
    }
    listing = "\n".join(f"{name}: {count} lines" for name, count in sorted(long.items()))
    assert not long, f"files over {MAX_LINES} lines (split them by use case):\n{listing}"
