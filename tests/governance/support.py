"""A project with a user in each role, and the calls the governance tests repeat."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from tests.identity.api import audit_records
from tests.support.clients import User, create_user
from tests.support.waiting import eventually

TASK = {"commands": ["true"]}


@dataclass
class Team:
    """Project ``studio``, owned by ``owner``, with one user per role and an ``outsider``
    who holds none in it."""

    project_id: str
    owner: User
    admin: User
    operator: User
    member: User
    other_member: User
    viewer: User
    outsider: User

    def headers(self, user: User) -> dict[str, str]:
        return in_project(user, self.project_id)


def in_project(user: User, project: str) -> dict[str, str]:
    return {**user.headers, "X-Tenant-ID": project}


async def project(client: httpx.AsyncClient, user: User, name: str) -> str:
    response = await client.post("/api/v1/projects", json={"name": name}, headers=user.headers)
    assert response.status_code == 201, response.text
    project_id: str = response.json()["id"]
    return project_id


async def bind(
    client: httpx.AsyncClient,
    actor: User,
    subject_id: uuid.UUID | str,
    role: str,
    project_id: str | None,
    *,
    subject_type: str = "user",
) -> httpx.Response:
    body: dict[str, Any] = {
        "subject_type": subject_type,
        "subject_id": str(subject_id),
        "role": role,
        "scope_type": "project" if project_id else "system",
    }
    if project_id:
        body["scope_id"] = project_id
    return await client.post("/api/v1/role-bindings", json=body, headers=actor.headers)


async def team(client: httpx.AsyncClient, admin: User) -> Team:
    owner = await create_user(client, admin, "olga")
    project_id = await project(client, owner, "Studio")
    users = {}
    for name, role in (
        ("ada", "admin"),
        ("oli", "operator"),
        ("mia", "member"),
        ("max", "member"),
        ("vic", "viewer"),
    ):
        users[name] = await create_user(client, admin, name)
        response = await bind(client, owner, users[name].id, role, project_id)
        assert response.status_code == 201, response.text
    outsider = await create_user(client, admin, "otto")
    return Team(
        project_id,
        owner,
        users["ada"],
        users["oli"],
        users["mia"],
        users["max"],
        users["vic"],
        outsider,
    )


async def submit(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    response = await client.post("/api/v1/tasks", json=TASK, headers=headers)
    assert response.status_code == 201, response.text
    task_id: str = response.json()["task_id"]
    return task_id


def assert_error(response: httpx.Response, status: int, code: str, *words: str) -> None:
    """An error envelope of ``status`` and ``code`` whose message (or a detail's field)
    says each of ``words``."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    said = " ".join([error["message"], *(d["field"] for d in error["details"])])
    for word in words:
        assert word in said, error


async def denial(
    client: httpx.AsyncClient, admin: User, user: User, permission: str
) -> dict[str, Any]:
    """The audit record of ``user``'s denied ``permission``, once it is written."""

    async def found() -> dict[str, Any] | None:
        records = await audit_records(
            client, admin, action="access.denied", actor_id=str(user.id), outcome="failure"
        )
        matching = [r for r in records if r["detail"]["permission"] == permission]
        return matching[-1] if matching else None

    record: dict[str, Any] = await eventually(found, what=f"the denial of {permission}")
    return record
