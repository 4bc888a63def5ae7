"""Access rules: administrators write them; after roles they allow or deny, the highest
priority among those that apply decides, deny wins at equal priority, default deny."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.governance.support import TASK, Team, assert_error, submit, team
from tests.support.clients import User


async def _rule(client: httpx.AsyncClient, admin: User, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/access-rules", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    rule: dict[str, Any] = response.json()
    return rule


async def _submits(client: httpx.AsyncClient, studio: Team, user: User) -> int:
    response = await client.post("/api/v1/tasks", json=TASK, headers=studio.headers(user))
    return response.status_code


async def test_only_administrators_write_rules(client: httpx.AsyncClient, admin: User) -> None:
    studio = await team(client, admin)
    body = {
        "subject_type": "user",
        "subject_id": str(studio.viewer.id),
        "action": "create",
        "resource_type": "task",
        "effect": "allow",
    }
    for user in (studio.viewer, studio.owner):
        response = await client.post("/api/v1/access-rules", json=body, headers=user.headers)
        assert_error(response, 403, "FORBIDDEN", "access_rule:create")
    listed = await client.get("/api/v1/access-rules", headers=studio.owner.headers)
    assert_error(listed, 403, "FORBIDDEN", "access_rule:read")
    assert await _submits(client, studio, studio.viewer) == 403


async def test_rules_refine_roles(client: httpx.AsyncClient, admin: User) -> None:
    studio = await team(client, admin)
    # An allow grants what no role does.
    allow = await _rule(
        client,
        admin,
        subject_type="user",
        subject_id=str(studio.viewer.id),
        action="create",
        resource_type="task",
        effect="allow",
        conditions={"project_id": studio.project_id},
    )
    assert await _submits(client, studio, studio.viewer) == 201
    # A deny on the whole project beats an allow of the same priority.
    deny = await _rule(
        client,
        admin,
        subject_type="project",
        subject_id=studio.project_id,
        action="*",
        resource_type="task",
        effect="deny",
    )
    for user in (studio.viewer, studio.member, studio.owner):
        assert await _submits(client, studio, user) == 403
    refused = await client.post("/api/v1/tasks", json=TASK, headers=studio.headers(studio.member))
    assert_error(refused, 403, "FORBIDDEN", deny["id"], "task:create")
    # The instance administrator is bound by no rule.
    assert await _submits(client, studio, admin) == 201
    # A higher-priority allow is the deliberate exception.
    patched = await client.patch(
        f"/api/v1/access-rules/{allow['id']}", json={"priority": 10}, headers=admin.headers
    )
    assert patched.json()["priority"] == 10
    assert await _submits(client, studio, studio.viewer) == 201
    assert await _submits(client, studio, studio.member) == 403
    # Gone, the roles decide again.
    for rule in (allow, deny):
        deleted = await client.delete(f"/api/v1/access-rules/{rule['id']}", headers=admin.headers)
        assert deleted.status_code == 204
    assert await _submits(client, studio, studio.viewer) == 403
    assert await _submits(client, studio, studio.member) == 201


async def test_a_rule_can_name_one_resource_and_the_callers_own(
    client: httpx.AsyncClient, admin: User
) -> None:
    studio = await team(client, admin)
    first = await submit(client, studio.headers(studio.member))
    second = await submit(client, studio.headers(studio.member))
    await _rule(
        client,
        admin,
        subject_type="user",
        subject_id=str(studio.operator.id),
        action="cancel",
        resource_type="task",
        resource_pattern=first,
        effect="deny",
    )
    headers = studio.operator.headers
    assert (await client.post(f"/api/v1/tasks/{first}/cancel", headers=headers)).status_code == 403
    assert (await client.post(f"/api/v1/tasks/{second}/cancel", headers=headers)).status_code == 202
    # Only on what others created: the member still cancels its own.
    await _rule(
        client,
        admin,
        subject_type="user",
        subject_id=str(studio.member.id),
        action="*",
        resource_type="task",
        effect="deny",
        conditions={"owner": "other"},
    )
    cancel = await client.post(f"/api/v1/tasks/{first}/cancel", headers=studio.member.headers)
    assert cancel.status_code == 202


async def test_bad_rules_name_the_field(client: httpx.AsyncClient, admin: User) -> None:
    base = {
        "subject_type": "user",
        "subject_id": str(admin.id),
        "action": "read",
        "resource_type": "task",
        "effect": "deny",
    }
    cases: list[tuple[dict[str, Any], str]] = [
        ({"subject_id": str(uuid.uuid4())}, "subject_id"),
        ({"resource_type": "spaceship"}, "resource_type"),
        ({"action": "launch"}, "action"),
        ({"effect": "maybe"}, "effect"),
        ({"conditions": {"weekday": "monday"}}, "conditions.weekday"),
        ({"conditions": {"via": "carrier-pigeon"}}, "conditions.via"),
        ({"conditions": {"project_id": "nope"}}, "conditions.project_id"),
    ]
    for change, field in cases:
        response = await client.post(
            "/api/v1/access-rules", json={**base, **change}, headers=admin.headers
        )
        assert_error(response, 400, "VALIDATION_ERROR")
        assert [d["field"] for d in response.json()["error"]["details"]] == [field], change
    rule = await _rule(client, admin, **base)
    got = await client.get(f"/api/v1/access-rules/{rule['id']}", headers=admin.headers)
    assert got.json() == rule
    bad = await client.patch(
        f"/api/v1/access-rules/{rule['id']}", json={"action": "launch"}, headers=admin.headers
    )
    assert_error(bad, 400, "VALIDATION_ERROR", "action")
    missing = await client.get(f"/api/v1/access-rules/{uuid.uuid4()}", headers=admin.headers)
    assert_error(missing, 404, "NOT_FOUND")
