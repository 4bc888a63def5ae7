"""Integers in the query and the path beyond what the database compares are a 400."""

from __future__ import annotations

import httpx
import pytest

from tests.http.test_conventions import assert_envelope
from tests.support.clients import User

HUGE = "99999999999999999999"  # past 64 bits


async def _paths(client: httpx.AsyncClient, admin: User) -> dict[str, tuple[str, str]]:
    graph = {"nodes": [{"id": "say", "type": "log", "config": {"message": "hi"}}], "edges": []}
    workflow = await client.post(
        "/api/v1/workflows", json={"name": "w", "graph": graph}, headers=admin.headers
    )
    assert workflow.status_code == 201, workflow.text
    task = await client.post("/api/v1/tasks", json={"commands": ["true"]}, headers=admin.headers)
    assert task.status_code == 201, task.text
    versions = f"/api/v1/workflows/{workflow.json()['id']}/versions"
    return {
        "offset": ("/api/v1/tasks?offset={}", "offset"),
        "after": (f"/api/v1/tasks/{task.json()['task_id']}/events?after={{}}", "after"),
        "page": ("/api/v1/schedules?page={}", "page"),
        "version": (versions + "/{}", "version"),
    }


@pytest.mark.parametrize("name", ["offset", "after", "page", "version"])
@pytest.mark.parametrize("value", [HUGE, "-" + HUGE])
async def test_integers_past_the_columns_range_are_400_naming_the_parameter(
    client: httpx.AsyncClient, admin: User, name: str, value: str
) -> None:
    template, field = (await _paths(client, admin))[name]
    response = await client.get(template.format(value), headers=admin.headers)
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert [d["field"] for d in error["details"]] == [field]  # type: ignore[attr-defined]


async def test_the_largest_values_are_answered(client: httpx.AsyncClient, admin: User) -> None:
    paths = await _paths(client, admin)
    largest = {"offset": 2**63 - 1, "after": 2**63 - 1, "page": (2**63 - 1) // 100}
    for name, value in largest.items():
        response = await client.get(paths[name][0].format(value), headers=admin.headers)
        assert response.status_code == 200, (name, response.text)
    # Versions are a 32-bit column on PostgreSQL: its largest is simply not there.
    response = await client.get(paths["version"][0].format(2**31 - 1), headers=admin.headers)
    assert_envelope(response, 404, "NOT_FOUND")
    response = await client.get(paths["version"][0].format(2**31), headers=admin.headers)
    assert_envelope(response, 400, "VALIDATION_ERROR")


async def test_the_range_is_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    parameters = spec["paths"]["/api/v1/tasks"]["get"]["parameters"]
    offset = next(p for p in parameters if p["name"] == "offset")
    assert {"type": "integer", "minimum": 0, "maximum": 2**63 - 1} in offset["schema"]["anyOf"]


@pytest.mark.parametrize(
    "instant", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "0001-01-01"]
)
async def test_instants_at_the_calendars_edges_are_400_or_answered(
    client: httpx.AsyncClient, admin: User, instant: str
) -> None:
    fields = {
        "/api/v1/tasks": ("created_after", "created_before"),
        "/api/v1/executions": ("since", "until"),
        "/api/v1/audit": ("since", "until"),
        "/api/v1/runs": ("since", "until"),
    }
    for path, names in fields.items():
        for name in names:
            response = await client.get(path, params={name: instant}, headers=admin.headers)
            # A naive instant is UTC; one whose UTC time leaves the calendar names the field.
            if instant == "0001-01-01":
                assert response.status_code == 200, (path, name, response.text)
            else:
                error = assert_envelope(response, 400, "VALIDATION_ERROR")
                assert [d["field"] for d in error["details"]] == [name]  # type: ignore[attr-defined]
    expiring = await client.post(
        "/api/v1/api-keys", json={"name": "k", "expires_at": instant}, headers=admin.headers
    )
    assert_envelope(expiring, 400, "VALIDATION_ERROR")
    assert expiring.json()["error"]["details"][0]["field"] == "expires_at"
