"""Shortcuts for the identity API calls the tests repeat."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from taskgate.identity.user_service import ensure_first_admin
from tests.support.clients import ADMIN_PASSWORD, User


async def first_admin(app: FastAPI) -> None:
    """The administrator the ``admin`` fixture makes, for apps built with overrides."""
    async with app.state.db.transaction() as session:
        await ensure_first_admin(session, ADMIN_PASSWORD)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login_pair(
    client: httpx.AsyncClient, username: str, password: str, path: str = "/api/v1/auth/login"
) -> dict[str, Any]:
    response = await client.post(path, json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def create_key(
    client: httpx.AsyncClient, headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/api-keys", json={"name": "key", **fields}, headers=headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def me_status(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    return (await client.get("/api/v1/users/me", headers=headers)).status_code


async def audit_records(
    client: httpx.AsyncClient, admin: User, **filters: str
) -> list[dict[str, Any]]:
    """Every audit record matching ``filters``, oldest first, walking all pages."""
    params = {"ordering": "created_at", "limit": "100", **filters}
    response = await client.get("/api/v1/audit", params=params, headers=admin.headers)
    assert response.status_code == 200, response.text
    page = response.json()
    records: list[dict[str, Any]] = list(page["results"])
    while page["next"]:
        page = (await client.get(page["next"], headers=admin.headers)).json()
        records.extend(page["results"])
    return records
