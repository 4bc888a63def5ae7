"""Endpoint modules translate HTTP to a service call and back: they import no ORM model and
no SQLAlchemy (queries belong in repositories, use cases in services). Read from the source,
without importing it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "src" / "taskgate"
FORBIDDEN = ("taskgate.models", "sqlalchemy")


def endpoint_modules() -> Iterator[Path]:
    """``endpoints.py`` (and ``<use case>_endpoints.py``) files, and modules of any
    ``endpoints`` package."""
    for path in sorted(SOURCE.rglob("*.py")):
        relative = path.relative_to(SOURCE)
        if path.stem.endswith("endpoints") or "endpoints" in relative.parts[:-1]:
            yield path


def forbidden_imports(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, module) of each import statement, anywhere in the module, that reaches a
    forbidden package."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from taskgate import models`` names the package in the imported name.
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found = [name for name in names if forbidden(name)]
        if found:
            yield node.lineno, found[0]


def forbidden(name: str) -> bool:
    return any(name == root or name.startswith(root + ".") for root in FORBIDDEN)


def test_endpoint_modules_are_found() -> None:
    names = {path.relative_to(SOURCE).as_posix() for path in endpoint_modules()}
    assert {"tasks/endpoints.py", "schedules/endpoints.py", "identity/endpoints.py"} <= names


def test_no_endpoint_module_imports_models_or_sqlalchemy() -> None:
    offending = []
    for path in endpoint_modules():
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, name in forbidden_imports(tree):
            offending.append(f"{path.relative_to(SOURCE)}:{line} imports {name}")
    assert not offending, "\n".join(offending)


def test_the_check_sees_every_form_of_import() -> None:
    source = (
        "import sqlalchemy\n"
        "import sqlalchemy.orm as orm\n"
        "from sqlalchemy import select\n"
        "from taskgate.models import Task\n"
        "from taskgate import models\n"
        "from taskgate.models.tasks import Run\n"
        "def f():\n"
        "    from taskgate.models import Event\n"
        "from taskgate.modelsx import fine\n"
        "from taskgate.tasks import service\n"
    )
    lines = [line for line, _ in forbidden_imports(ast.parse(source))]
    assert sorted(lines) == [1, 2, 3, 4, 5, 6, 8]
