"""The authorization matrix: every operation the app serves, called by every kind of caller,
answers what the role table says it should.

The expectations are derived, not typed out: each operation's row in
``tests/governance/matrix/table.py`` names what it needs, and ``matrix/rules.py:expected``
turns that and the caller's role (``taskgate.governance.roles``) into 401, 404, 403 or 2xx.
Every call is real, against resources of one project built once per database. A UI that says
no while the API says yes (an operator allowed what only an admin may do) shows up here as a
cell whose outcome differs from the rule.

``KNOWN_GAPS`` lists the cells where a service does not ask the authorization seam yet, each
with its reason; a listed cell that starts answering by the rule fails too, so that its entry
is removed.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.routing import Route

from taskgate.app import create_app
from tests.conftest import make_settings
from tests.events.support import LiveServer, live_server
from tests.governance.matrix.calls import Answer, Call, fill, perform
from tests.governance.matrix.rules import PRINCIPALS, Project, System, Token, Who, expected
from tests.governance.matrix.table import OPERATIONS, Op
from tests.governance.matrix.world import METRICS_TOKEN, World, build
from tests.support.databases import wipe

Key = tuple[str, str]


def _gaps(*entries: tuple[str, str, str, str]) -> dict[tuple[str, str, str], str]:
    return {
        (method, path, who): reason
        for method, path, callers, reason in entries
        for who in callers.split()
    }


# (method, path template, callers, why): cells whose outcome differs from the rule because the
# service behind them does not ask the authorization seam yet, each with its reason, e.g.
#     ("GET", "/api/v1/runs/{run_id}", "viewer member operator", "runs: by owner (branch)"),
# Empty since runs, jobs, approvals, audit, events, the queue, workflows, executions,
# schedules, destinations, subscriptions and webhook sources moved onto the seam.
KNOWN_GAPS: dict[tuple[str, str, str], str] = _gaps()

# Operations --------------------------------------------------------------------------------


def served_operations(app: FastAPI) -> set[Key]:
    """(method, path template) of every operation: the OpenAPI document's, and every route
    besides (streams, WebSockets and pages the document leaves out)."""
    found: set[Key] = {
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    for route in app.routes:
        if isinstance(route, APIWebSocketRoute):
            found.add(("WS", route.path))
        elif isinstance(route, APIRoute | Route):
            found.update((m, route.path) for m in route.methods or () if m != "HEAD")
    return found


def missing_rows(served: set[Key], table: Iterable[Key]) -> list[str]:
    """What to add to (or drop from) the matrix table so it covers exactly what is served."""
    listed = set(table)
    problems = [
        f"{method} {path} has no row in the authorization matrix: add "
        f'("{method}", "{path}"): Op(<what it needs>, …) to OPERATIONS in '
        "tests/governance/matrix/table.py (see docs/development.md, Add an endpoint)"
        for method, path in sorted(served - listed)
    ]
    problems += [
        f"{method} {path} is in the matrix table but not served: remove its row"
        for method, path in sorted(listed - served)
    ]
    return problems


def _app() -> FastAPI:
    # Only its routes are read: no lifespan, no database connection.
    return create_app(make_settings("sqlite+aiosqlite:///:memory:", _nowhere()))


def _nowhere() -> Path:
    return Path(tempfile.gettempdir()) / "taskgate-matrix-routes"


def test_every_operation_has_a_row_in_the_matrix() -> None:
    problems = missing_rows(served_operations(_app()), OPERATIONS)
    assert not problems, "\n".join(problems)


def test_an_operation_without_a_row_fails_with_what_to_add() -> None:
    app = _app()

    @app.get("/api/v1/widgets/{widget_id}")
    async def get_widget(widget_id: str) -> dict[str, str]:
        return {}

    @app.websocket("/api/v1/widgets/live")
    async def widgets_live() -> None:
        return None

    problems = missing_rows(served_operations(app), OPERATIONS)
    assert len(problems) == 2, problems
    assert problems[0].startswith("GET /api/v1/widgets/{widget_id} has no row")
    assert '("GET", "/api/v1/widgets/{widget_id}"): Op(' in problems[0]
    assert "WS /api/v1/widgets/live has no row" in problems[1]
    stale = missing_rows(served_operations(_app()), [*OPERATIONS, ("GET", "/gone")])
    assert stale == ["GET /gone is in the matrix table but not served: remove its row"]


def test_every_known_gap_names_a_row_and_a_caller() -> None:
    callers = {who.name for who in PRINCIPALS}
    for method, path, who in KNOWN_GAPS:
        assert (method, path) in OPERATIONS, (method, path)
        assert who in callers, who


# The matrix --------------------------------------------------------------------------------


@dataclass
class Matrix:
    server: LiveServer
    world: World


@pytest.fixture(scope="module")
async def matrix(migrated: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Matrix]:
    problems = missing_rows(served_operations(_app()), OPERATIONS)
    assert not problems, "the matrix cannot run:\n" + "\n".join(problems)
    settings = make_settings(
        migrated, tmp_path_factory.mktemp("matrix"), http={"metrics_token": METRICS_TOKEN}
    )
    try:
        async with live_server(settings) as server:
            world = await build(server.client, server.db, server.admin)
            yield Matrix(server, world)
    finally:
        engine = create_async_engine(migrated)
        try:
            await wipe(engine)
        finally:
            await engine.dispose()


async def _call(world: World, who: Who, key: Key, op: Op) -> Call:
    method, template = key
    if op.call is not None:
        return await op.call(world, who, method, template)
    values = dict(world.shared)
    for param, maker in op.fresh.items():
        values[param] = await world.make(maker or param, who)
    headers = world.credentials(who)
    if op.in_project:
        headers["X-Tenant-ID"] = world.project_id
    body = op.body
    if callable(body):
        body = await body(world, who)
    shows = None if op.shows is None else world.shared[op.shows]
    query = {"limit": "100", **(op.query or {})} if shows else op.query
    path = fill(template, values)
    return Call(method, path, headers, body, query=query, kind=op.kind, shows=shows)


@pytest.mark.parametrize("key", sorted(OPERATIONS), ids=lambda key: " ".join(key))
async def test_each_caller_gets_what_its_role_allows(matrix: Matrix, key: Key) -> None:
    world, op = matrix.world, OPERATIONS[key]
    wrong: list[str] = []
    for who in PRINCIPALS:
        call = await _call(world, who, key, op)
        answer: Answer = await perform(world, call, matrix.server.ws_url)
        if answer.outcome == "2xx" and op.undo is not None:
            await op.undo(world)
        rule = expected(op.need, who, op.ok)
        gap = KNOWN_GAPS.get((*key, who.name))
        if gap is None and answer.outcome != rule:
            wrong.append(f"{who.name}: expected {rule}, got {answer.outcome} {answer.said}")
        elif gap is not None and answer.outcome == rule:
            wrong.append(f"{who.name}: answers {rule} by the rule now; drop its KNOWN_GAPS entry")
    if isinstance(op.need, Token):
        scrape = await world.client.get(
            key[1], headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
        if scrape.status_code != 200:
            wrong.append(f"its own token: expected 2xx, got {scrape.status_code}")
    assert not wrong, f"{' '.join(key)} ({op.need}):\n" + "\n".join(wrong)


def test_the_expectations_follow_the_role_table() -> None:
    """A few cells derived by hand, so that the derivation itself cannot drift into agreeing
    with whatever the app answers."""
    who = {w.name: w for w in PRINCIPALS}
    cancel = Project("task:cancel")
    assert [expected(cancel, who[n]) for n in ("member", "operator", "project_admin")] == [
        "403",
        "2xx",
        "2xx",
    ]
    assert expected(cancel, who["outsider"]) == "404"
    assert expected(cancel, who["anonymous"]) == "401"
    assert expected(Project("task:read"), who["read_key"]) == "2xx"
    assert expected(Project("workflow:read"), who["read_key"]) == "403"
    assert expected(Project("task:read"), who["other_key"]) == "404"
    assert expected(Project("audit:read"), who["viewer"]) == "403"
    assert expected(System("group:create"), who["project_admin"]) == "403"
    assert expected(System("group:create"), who["instance_admin"]) == "2xx"
