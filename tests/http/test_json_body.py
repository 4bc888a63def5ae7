"""JSON bodies are standard JSON: a number no double holds is refused, not stored as null."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from taskgate.http.direct_route import DirectRoute
from taskgate.http.json_body import MAX_DEPTH, JsonRoute
from tests.http.test_conventions import assert_envelope
from tests.support.clients import User

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize("number", ["1e400", "-1e400", "NaN", "Infinity", "-Infinity"])
async def test_a_non_finite_context_value_is_400_naming_it(
    client: httpx.AsyncClient, admin: User, number: str
) -> None:
    # POST /tasks is a DirectRoute: its body is validated by pydantic from the bytes.
    body = '{"commands": ["true"], "context": {"ok": 1, "big": [0, NUMBER]}}'
    body = body.replace("NUMBER", number)
    response = await client.post("/api/v1/tasks", content=body, headers={**admin.headers, **JSON})
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert [d["field"] for d in error["details"]] == ["context.big.1"]  # type: ignore[attr-defined]
    listed = await client.get("/api/v1/tasks", headers=admin.headers)
    assert listed.json()["results"] == []


async def test_non_finite_numbers_are_refused_on_every_json_route(
    client: httpx.AsyncClient, admin: User
) -> None:
    # PATCH /users/{id} and POST /workflows are parsed by FastAPI (Python's json).
    response = await client.post(
        "/api/v1/workflows",
        content='{"name": "w", "graph": {"nodes": [{"id": "t", "type": "transform", '
        '"config": {"template": {"x": 1e400}}}]}}',
        headers={**admin.headers, **JSON},
    )
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    fields = [d["field"] for d in error["details"]]  # type: ignore[attr-defined]
    assert fields == ["graph.nodes.0.config.template.x"]
    response = await client.post(
        "/api/v1/api-keys", content='{"name": NaN}', headers={**admin.headers, **JSON}
    )
    assert_envelope(response, 400, "VALIDATION_ERROR")
    assert (await client.get("/api/v1/workflows", headers=admin.headers)).json()["results"] == []


async def test_a_lone_surrogate_is_malformed_json(client: httpx.AsyncClient, admin: User) -> None:
    response = await client.post(
        "/api/v1/tasks",
        content=b'{"commands": ["echo \\ud800"]}',
        headers={**admin.headers, **JSON},
    )
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert "Malformed JSON" in str(error["message"])


async def test_an_integer_past_64_bits_is_400_naming_it(
    client: httpx.AsyncClient, admin: User
) -> None:
    # PostgreSQL's group commit wrote it with orjson, which cannot: a 500.
    for number in ("99999999999999999999", "-9223372036854775809"):
        body = '{"commands": ["true"], "context": {"id": "12345678901234567890", "n": %s}}'
        response = await client.post(
            "/api/v1/tasks", content=body % number, headers={**admin.headers, **JSON}
        )
        error = assert_envelope(response, 400, "VALIDATION_ERROR")
        assert [d["field"] for d in error["details"]] == ["context.n"]  # type: ignore[attr-defined]


async def test_large_finite_numbers_and_integers_keep_their_value(
    client: httpx.AsyncClient, admin: User
) -> None:
    context = {"f": 0.5, "i": 2**64 - 1, "j": -(2**63), "s": "12345678901234567890123"}
    response = await client.post(
        "/api/v1/tasks", json={"commands": ["true"], "context": context}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    task = await client.get(f"/api/v1/tasks/{response.json()['task_id']}", headers=admin.headers)
    assert task.json()["context"] == context


def test_every_route_with_a_json_body_checks_it(app: FastAPI) -> None:
    unchecked = [
        route.path
        for route in app.routes
        if isinstance(route, APIRoute)
        and route.body_field is not None
        and not isinstance(route, JsonRoute | DirectRoute)
    ]
    assert unchecked == []


async def test_a_body_nested_past_the_limit_is_400(client: httpx.AsyncClient, admin: User) -> None:
    def nested(depth: int) -> object:
        value: object = 1
        for _ in range(depth):
            value = [value]
        return value

    # The body is one level, context another: the list may nest MAX_DEPTH - 2 deep.
    fine = {"commands": ["true"], "context": {"x": nested(MAX_DEPTH - 2)}}
    response = await client.post("/api/v1/tasks", json=fine, headers=admin.headers)
    assert response.status_code == 201, response.text
    deep = {"commands": ["true"], "context": {"x": nested(MAX_DEPTH - 1)}}
    response = await client.post("/api/v1/tasks", json=deep, headers=admin.headers)
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    field = error["details"][0]["field"]  # type: ignore[index]
    assert field == "context.x" + ".0" * (MAX_DEPTH - 2)
