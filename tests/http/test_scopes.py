"""API-key scopes: every route refuses a key that lacks its scopes with the same 403, naming
the first scope missing, and lets a key holding them through."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.identity.api import create_key
from tests.support.clients import User, create_user

ID = str(uuid.UUID(int=7))
DESTINATION = {
    "name": "d",
    "destination_type": "webhook",
    "destination_config": {"url": "http://127.0.0.1:9/hook"},
}
SCHEDULE = {"name": "s", "cron_expression": "0 * * * *", "task": {"commands": ["true"]}}
WORKFLOW = {
    "name": "w",
    "graph": {"nodes": [{"id": "a", "type": "log", "config": {"message": "hi"}}], "edges": []},
}
DECISION = {"workflow_id": ID, "approval_id": ID, "approved": True}
BINDING = {"subject_type": "user", "subject_id": ID, "role": "viewer"}
RULE = {
    "subject_type": "user",
    "subject_id": ID,
    "action": "read",
    "resource_type": "task",
    "effect": "deny",
}

# (method, path, body, the scopes the route needs, in the order they are checked).
ROUTES: list[tuple[str, str, dict[str, Any] | None, list[str]]] = [
    ("POST", "/api/v1/tasks", {"commands": ["true"]}, ["tasks:write"]),
    ("GET", "/api/v1/tasks", None, ["tasks:read"]),
    ("GET", f"/api/v1/tasks/{ID}", None, ["tasks:read"]),
    ("GET", f"/api/v1/tasks/{ID}/events", None, ["tasks:read"]),
    ("GET", f"/api/v1/tasks/{ID}/control-state", None, ["tasks:read"]),
    ("POST", f"/api/v1/tasks/{ID}/cancel", None, ["tasks:write"]),
    ("POST", f"/api/v1/tasks/{ID}/pause", None, ["tasks:write"]),
    ("POST", f"/api/v1/tasks/{ID}/resume", None, ["tasks:write"]),
    ("GET", f"/api/v1/tasks/{ID}/stream", None, ["tasks:read"]),
    ("GET", "/api/v1/runs", None, ["tasks:read"]),
    ("POST", "/api/v1/runs", {"name": "r"}, ["tasks:write"]),
    ("GET", f"/api/v1/runs/{ID}", None, ["tasks:read"]),
    ("GET", f"/api/v1/runs/{ID}/events", None, ["tasks:read"]),
    ("GET", f"/api/v1/runs/{ID}/logs", None, ["tasks:read"]),
    ("GET", f"/api/v1/stream/sse?task_id={ID}", None, ["tasks:read"]),
    ("GET", f"/api/v1/stream/sse?run_id={ID}", None, ["tasks:read"]),
    (
        "POST",
        f"/api/v1/runs/{ID}/logs",
        {"entries": [{"message": "m"}]},
        ["tasks:write", "tasks:read"],
    ),
    ("GET", "/api/v1/jobs", None, ["tasks:read"]),
    ("GET", f"/api/v1/jobs/{ID}", None, ["tasks:read"]),
    ("GET", "/api/v1/schedules", None, ["schedules:read"]),
    ("POST", "/api/v1/schedules", SCHEDULE, ["schedules:write"]),
    ("GET", f"/api/v1/schedules/{ID}", None, ["schedules:read"]),
    ("PATCH", f"/api/v1/schedules/{ID}", {"name": "t"}, ["schedules:write"]),
    ("PUT", f"/api/v1/schedules/{ID}", {"name": "t"}, ["schedules:write"]),
    ("DELETE", f"/api/v1/schedules/{ID}", None, ["schedules:write"]),
    ("POST", f"/api/v1/schedules/{ID}/pause", None, ["schedules:write"]),
    ("POST", f"/api/v1/schedules/{ID}/resume", None, ["schedules:write"]),
    ("POST", f"/api/v1/schedules/{ID}/trigger", None, ["schedules:write", "schedules:read"]),
    ("POST", f"/api/v1/schedules/{ID}/skip-next", None, ["schedules:write", "schedules:read"]),
    ("GET", f"/api/v1/schedules/{ID}/runs", None, ["schedules:read"]),
    ("GET", "/api/v1/workflows", None, ["workflows:read"]),
    ("POST", "/api/v1/workflows", WORKFLOW, ["workflows:write"]),
    ("GET", f"/api/v1/workflows/{ID}", None, ["workflows:read"]),
    ("PATCH", f"/api/v1/workflows/{ID}", {"name": "v"}, ["workflows:write"]),
    ("PUT", f"/api/v1/workflows/{ID}", {"name": "v"}, ["workflows:write"]),
    ("DELETE", f"/api/v1/workflows/{ID}", None, ["workflows:write"]),
    ("GET", f"/api/v1/workflows/{ID}/versions", None, ["workflows:read"]),
    ("GET", f"/api/v1/workflows/{ID}/versions/1", None, ["workflows:read"]),
    ("POST", f"/api/v1/workflows/{ID}/duplicate", None, ["workflows:read", "workflows:write"]),
    ("POST", f"/api/v1/workflows/{ID}/run", None, ["executions:write"]),
    ("GET", "/api/v1/executions", None, ["executions:read"]),
    ("GET", f"/api/v1/executions/{ID}", None, ["executions:read"]),
    ("POST", f"/api/v1/executions/{ID}/replay", None, ["executions:write"]),
    ("POST", f"/api/v1/executions/{ID}/cancel", None, ["executions:write"]),
    ("GET", "/api/v1/approvals", None, ["approvals:read"]),
    ("GET", f"/api/v1/approvals/{ID}", None, ["approvals:read"]),
    ("POST", f"/api/v1/approvals/{ID}/decision", {"approved": True}, ["approvals:write"]),
    ("POST", "/api/v1/approvals/decision", DECISION, ["approvals:write"]),
    ("POST", "/api/v1/events", {"type": "order.created", "payload": {}}, ["events:write"]),
    ("GET", "/api/v1/events", None, ["events:read"]),
    ("GET", "/api/v1/webhook-sources", None, ["webhooks:read"]),
    ("POST", "/api/v1/webhook-sources", {"name": "w"}, ["webhooks:write"]),
    ("GET", f"/api/v1/webhook-sources/{ID}", None, ["webhooks:read"]),
    ("PATCH", f"/api/v1/webhook-sources/{ID}", {"name": "x"}, ["webhooks:write"]),
    ("DELETE", f"/api/v1/webhook-sources/{ID}", None, ["webhooks:write"]),
    ("GET", "/api/v1/destinations", None, ["destinations:read"]),
    ("POST", "/api/v1/destinations", DESTINATION, ["destinations:write"]),
    ("GET", f"/api/v1/destinations/{ID}", None, ["destinations:read"]),
    ("PATCH", f"/api/v1/destinations/{ID}", {"name": "e"}, ["destinations:write"]),
    ("DELETE", f"/api/v1/destinations/{ID}", None, ["destinations:write"]),
    ("POST", f"/api/v1/destinations/{ID}/test", None, ["destinations:write"]),
    ("GET", f"/api/v1/destinations/{ID}/deliveries", None, ["destinations:read"]),
    ("GET", "/api/v1/subscriptions", None, ["subscriptions:read"]),
    (
        "POST",
        "/api/v1/subscriptions",
        {"destination_id": ID, "event_pattern": "*"},
        ["subscriptions:write"],
    ),
    ("GET", f"/api/v1/subscriptions/{ID}", None, ["subscriptions:read"]),
    ("PATCH", f"/api/v1/subscriptions/{ID}", {"is_active": False}, ["subscriptions:write"]),
    ("DELETE", f"/api/v1/subscriptions/{ID}", None, ["subscriptions:write"]),
    ("GET", "/api/v1/users", None, ["users:read"]),
    ("POST", "/api/v1/users", {"username": "u1", "password": "pw-u1-1234"}, ["users:write"]),
    ("GET", f"/api/v1/users/{ID}", None, ["users:read"]),
    ("PATCH", f"/api/v1/users/{ID}", {"timezone": "UTC"}, ["users:write"]),
    ("POST", f"/api/v1/users/{ID}/disable", None, ["users:write"]),
    ("POST", f"/api/v1/users/{ID}/enable", None, ["users:write"]),
    ("POST", f"/api/v1/users/{ID}/revoke-sessions", None, ["users:write"]),
    (
        "POST",
        f"/api/v1/users/{ID}/reset-password",
        {"password": "pw-new-12345"},
        ["users:write"],
    ),
    ("GET", "/api/v1/api-keys", None, ["api-keys:read"]),
    ("POST", "/api/v1/api-keys", {"name": "k", "scopes": []}, ["api-keys:write"]),
    ("GET", f"/api/v1/api-keys/{ID}", None, ["api-keys:read"]),
    ("DELETE", f"/api/v1/api-keys/{ID}", None, ["api-keys:write"]),
    ("POST", f"/api/v1/api-keys/{ID}/rotate", None, ["api-keys:write"]),
    ("GET", "/api/v1/audit", None, ["audit:read"]),
    ("GET", "/api/v1/projects", None, ["projects:read"]),
    ("POST", "/api/v1/projects", {"name": "p"}, ["projects:write"]),
    ("GET", f"/api/v1/projects/{ID}", None, ["projects:read"]),
    ("PATCH", f"/api/v1/projects/{ID}", {"name": "q"}, ["projects:write", "projects:read"]),
    ("POST", f"/api/v1/projects/{ID}/disable", None, ["projects:write", "projects:read"]),
    ("POST", f"/api/v1/projects/{ID}/enable", None, ["projects:write", "projects:read"]),
    ("GET", "/api/v1/groups", None, ["groups:read"]),
    ("POST", "/api/v1/groups", {"name": "g"}, ["groups:write"]),
    ("GET", f"/api/v1/groups/{ID}", None, ["groups:read"]),
    ("PATCH", f"/api/v1/groups/{ID}", {"name": "h"}, ["groups:write"]),
    ("POST", f"/api/v1/groups/{ID}/disable", None, ["groups:write"]),
    ("POST", f"/api/v1/groups/{ID}/enable", None, ["groups:write"]),
    ("GET", f"/api/v1/groups/{ID}/members", None, ["groups:read"]),
    ("POST", f"/api/v1/groups/{ID}/members", {"user_id": ID}, ["groups:write"]),
    ("DELETE", f"/api/v1/groups/{ID}/members/{ID}", None, ["groups:write"]),
    ("GET", "/api/v1/role-bindings", None, ["role-bindings:read"]),
    ("POST", "/api/v1/role-bindings", BINDING, ["role-bindings:write"]),
    ("DELETE", f"/api/v1/role-bindings/{ID}", None, ["role-bindings:write"]),
    ("GET", "/api/v1/access-rules", None, ["access-rules:read"]),
    ("POST", "/api/v1/access-rules", RULE, ["access-rules:write"]),
    ("GET", f"/api/v1/access-rules/{ID}", None, ["access-rules:read"]),
    ("PATCH", f"/api/v1/access-rules/{ID}", {"priority": 1}, ["access-rules:write"]),
    ("DELETE", f"/api/v1/access-rules/{ID}", None, ["access-rules:write"]),
]
UNRELATED = "stream:read"


def key_header(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


async def _call(
    client: httpx.AsyncClient, method: str, path: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    return await client.request(method, path, json=body, headers=headers)


async def test_a_key_without_the_scopes_of_a_route_is_refused_naming_the_first(
    client: httpx.AsyncClient, admin: User
) -> None:
    # The administrator's key, so that routes for administrators get as far as the scope.
    key = key_header((await create_key(client, admin.headers, scopes=[UNRELATED]))["key"])
    wrong = []
    for method, path, body, scopes in ROUTES:
        first = scopes[0]
        response = await _call(client, method, path, body, key)
        expected = {
            "code": "FORBIDDEN",
            "message": f"This API key lacks the scope {first!r}.",
            "details": [],
        }
        error = response.json().get("error", {}) if response.status_code == 403 else {}
        if {k: error.get(k) for k in expected} != expected:
            wrong.append((method, path, response.status_code, response.text[:200]))
    assert wrong == []


async def test_a_key_with_the_scopes_of_a_route_gets_past_them(
    client: httpx.AsyncClient, admin: User
) -> None:
    wrong = []
    for method, path, body, scopes in ROUTES:
        key = key_header((await create_key(client, admin.headers, scopes=scopes))["key"])
        response = await _call(client, method, path, body, key)
        if response.status_code == 403 or response.status_code >= 500:
            wrong.append((method, path, response.status_code, response.text[:200]))
    assert wrong == []


async def test_a_route_for_administrators_refuses_other_keys_as_before(
    client: httpx.AsyncClient, admin: User
) -> None:
    user = await create_user(client, admin, "someone")
    key = key_header((await create_key(client, user.headers, scopes=["users:read"]))["key"])
    response = await client.get("/api/v1/users", headers=key)
    assert response.status_code == 403
    assert response.json()["error"]["message"] == (
        "Not allowed: this needs the permission user:read."
    )


async def test_the_workflow_run_route_takes_either_scope(
    client: httpx.AsyncClient, admin: User
) -> None:
    for scopes in (["workflows:write"], ["executions:write"]):
        key = key_header((await create_key(client, admin.headers, scopes=scopes))["key"])
        response = await client.post(f"/api/v1/workflows/{ID}/run", headers=key)
        assert response.status_code == 404, (scopes, response.text)


async def test_what_a_schedule_starts_needs_the_scopes_of_its_target(
    client: httpx.AsyncClient, admin: User
) -> None:
    schedules_only = key_header(
        (await create_key(client, admin.headers, scopes=["schedules:*"]))["key"]
    )
    created = await client.post("/api/v1/schedules", json=SCHEDULE, headers=admin.headers)
    assert created.status_code == 201, created.text
    schedule_id = created.json()["id"]
    run_now = await client.post(f"/api/v1/schedules/{schedule_id}/trigger", headers=schedules_only)
    assert run_now.status_code == 403, run_now.text
    assert run_now.json()["error"]["message"] == "This API key lacks the scope 'tasks:write'."
    runs = await client.get(f"/api/v1/schedules/{schedule_id}/runs", headers=admin.headers)
    assert runs.json()["results"] == []

    workflow = await client.post("/api/v1/workflows", json=WORKFLOW, headers=admin.headers)
    assert workflow.status_code == 201, workflow.text
    body = {"name": "w", "cron_expression": "0 * * * *", "workflow_id": workflow.json()["id"]}
    refused = await client.post("/api/v1/schedules", json=body, headers=schedules_only)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["message"] == "This API key lacks the scope 'workflows:read'."
