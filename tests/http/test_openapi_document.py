"""The OpenAPI document says what the server answers (schemathesis checks it end to end in
test_openapi_conformance.py; these name each rule)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

ENVELOPE = {"$ref": "#/components/schemas/ErrorEnvelope"}


@pytest.fixture
async def spec(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


async def test_validation_errors_are_documented_as_the_400_the_server_answers(
    spec: dict[str, Any],
) -> None:
    checked = 0
    for label, operation in operations(spec):
        responses = operation["responses"]
        assert "422" not in responses, label
        # The project header takes any string: only the other parameters can be invalid.
        parameters = [p for p in operation.get("parameters", []) if p["name"] != "X-Tenant-ID"]
        if parameters or operation.get("requestBody"):
            checked += 1
            assert responses["400"]["content"] == {"application/json": {"schema": ENVELOPE}}, label
    assert checked > 50
    assert "HTTPValidationError" not in spec["components"]["schemas"]


async def test_every_error_is_documented_as_json_even_beside_an_event_stream(
    spec: dict[str, Any],
) -> None:
    for label, operation in operations(spec):
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                assert list(response.get("content", {})) == ["application/json"], (label, status)
    stream = spec["paths"]["/api/v1/tasks/{task_id}/stream"]["get"]["responses"]
    assert stream["404"]["content"]["application/json"]["schema"] == ENVELOPE


async def test_an_event_stream_documents_its_frames(spec: dict[str, Any]) -> None:
    for path in ("/api/v1/stream/sse", "/api/v1/runs/{run_id}/events"):
        media = spec["paths"][path]["get"]["responses"]["200"]["content"]["text/event-stream"]
        frame = media["itemSchema"]
        assert frame["required"] == ["event", "data"]
        assert frame["properties"]["data"]["contentMediaType"] == "application/json"
        # Without itemSchema OpenAPI 3.1 reads `schema` as one frame; with it, as the stream.
        assert media["schema"] == {"type": "array", "items": frame}


async def test_paging_parameters_declare_the_limits_the_server_enforces(
    spec: dict[str, Any],
) -> None:
    users = spec["paths"]["/api/v1/users"]["get"]
    parameters = {p["name"]: p["schema"] for p in users["parameters"]}
    assert parameters["limit"]["minimum"] == 1
    assert parameters["limit"]["maximum"] == 100
    assert "username" in parameters["ordering"]["enum"]
    assert parameters["ordering"]["default"] in parameters["ordering"]["enum"]
    assert parameters["cursor"]["pattern"] == "^[A-Za-z0-9_-]*$"


async def test_a_task_body_declares_exactly_one_of_its_inputs(spec: dict[str, Any]) -> None:
    body = spec["components"]["schemas"]["TaskCreate"]
    assert [branch["required"] for branch in body["oneOf"]] == [
        ["query"],
        ["script"],
        ["commands"],
    ]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/api/v1/tasks", "GET, POST"),
        ("PUT", "/api/v1/api-keys", "GET, POST"),
        ("OPTIONS", f"/api/v1/workflows/{uuid.UUID(int=1)}", "DELETE, GET, PATCH, PUT"),
        # A literal path is not read as a value of /approvals/{approval_id}.
        ("DELETE", "/api/v1/approvals/decision", "POST"),
    ],
)
async def test_a_405_allows_every_method_of_the_path(
    client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


async def test_the_project_header_is_declared_on_every_signed_in_operation(
    spec: dict[str, Any],
) -> None:
    with_header = set()
    for label, operation in operations(spec):
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "X-Tenant-ID":
                assert (parameter["in"], parameter["required"]) == ("header", False), label
                with_header.add(label)
    for label in ("GET /api/v1/users/me", "POST /api/v1/tasks", "GET /api/v1/role-bindings"):
        assert label in with_header
        operation = spec["paths"][label.split(" ")[1]][label.split(" ")[0].lower()]
        assert operation["responses"]["404"]["content"] == {
            "application/json": {"schema": ENVELOPE}
        }
    for label in ("POST /api/v1/auth/login", "POST /api/v1/webhooks/{source}", "GET /health"):
        assert label not in with_header


async def test_operations_tell_the_api_key_scopes_their_routes_need(
    spec: dict[str, Any],
) -> None:
    paths = spec["paths"]
    assert paths["/api/v1/tasks"]["get"]["description"] == "API-key scope: `tasks:read`."
    assert paths["/api/v1/tasks"]["post"]["description"] == "API-key scope: `tasks:write`."
    trigger = paths["/api/v1/schedules/{schedule_id}/trigger"]["post"]["description"]
    assert trigger.endswith("API-key scopes: `schedules:write` and `schedules:read`.")
    run = paths["/api/v1/workflows/{workflow_id}/run"]["post"]["description"]
    assert run == "API-key scope: `executions:write` (or `workflows:write`)."
    # A docstring stays, the scopes follow it.
    events = paths["/api/v1/events"]["get"]["description"]
    assert events == (
        "The events of the request's project, newest first.\n\nAPI-key scope: `events:read`."
    )
    assert "scope" not in paths["/api/v1/users/me"]["get"].get("description", "")
