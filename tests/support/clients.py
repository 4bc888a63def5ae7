"""Apps under test and the users that call them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from taskgate.app import create_app
from taskgate.ops.lifecycle import Component
from taskgate.runtime.services import RuntimeServices
from taskgate.settings import Settings

ADMIN_PASSWORD = "admin-password-1"


@asynccontextmanager
async def running_app(
    settings: Settings,
    components: list[Component] | None = None,
    services: RuntimeServices | None = None,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings, components, services)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(
            app=app, client=("127.0.0.1", 50000), raise_app_exceptions=False
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield app, client


@dataclass
class User:
    id: uuid.UUID
    username: str
    password: str
    token: str
    refresh: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def login(client: httpx.AsyncClient, username: str, password: str) -> User:
    response = await client.post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {body['access']}"})
    return User(
        uuid.UUID(me.json()["user"]["id"]), username, password, body["access"], body["refresh"]
    )


async def create_user(
    client: httpx.AsyncClient, admin: User, username: str, *, is_admin: bool = False
) -> User:
    password = f"pw-{username}-123"
    response = await client.post(
        "/api/v1/users",
        json={"username": username, "password": password, "is_admin": is_admin},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    return await login(client, username, password)
