"""Streams need a real server: httpx's ASGI transport buffers a streaming body to the end."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.app import create_app
from taskgate.db.session import Database
from taskgate.events.outbox import record_event
from taskgate.identity.user_service import ensure_first_admin
from taskgate.models import Project
from taskgate.settings import Settings
from tests.support.clients import ADMIN_PASSWORD, User, create_user, login
from tests.support.waiting import eventually


@dataclass
class LiveServer:
    app: FastAPI
    url: str
    client: httpx.AsyncClient
    admin: User

    @property
    def db(self) -> Database:
        db: Database = self.app.state.db
        return db

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)

    async def user(self, name: str) -> User:
        return await create_user(self.client, self.admin, name)


@asynccontextmanager
async def live_server(settings: Settings) -> AsyncIterator[LiveServer]:
    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started or task.done(), what="the server to start")
        if task.done():
            task.result()
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=20) as client:
            async with app.state.db.transaction() as session:
                await ensure_first_admin(session, ADMIN_PASSWORD)
            admin = await login(client, "admin", ADMIN_PASSWORD)
            yield LiveServer(app, url, client, admin)
    finally:
        server.should_exit = True
        done, _ = await asyncio.wait({task}, timeout=20)
        if not done:
            server.force_exit = True
            task.cancel()
        sock.close()


async def default_project(session: AsyncSession, owner: uuid.UUID) -> uuid.UUID | None:
    """The project a user's events go to when nothing names another."""
    found: uuid.UUID | None = await session.scalar(
        select(Project.id).where(Project.created_by == owner, Project.is_default)
    )
    return found


async def emit(
    db: Database, owner: uuid.UUID | None, type: str = "test.event", **fields: Any
) -> int:
    """Commit one event, as any feature would (in ``project_id``, by default its owner's
    default project), and return its id."""
    payload = fields.pop("payload", {"n": type})
    async with db.transaction() as session:
        if "project_id" not in fields and owner is not None:
            fields["project_id"] = await default_project(session, owner)
        event = await record_event(session, type, owner_id=owner, payload=payload, **fields)
    return event.id


@dataclass
class Frame:
    id: int | None
    event: str | None
    data: Any
    comment: str | None = None


class SseReader:
    """Parses a text/event-stream response frame by frame."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def frame(self, timeout: float = 10.0) -> Frame:
        async with asyncio.timeout(timeout):
            fields: dict[str, str] = {}
            comment: str | None = None
            async for line in self._lines:
                if line == "":
                    if fields or comment is not None:
                        return _frame(fields, comment)
                    continue
                if line.startswith(":"):
                    comment = line[1:].strip()
                    continue
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
        raise EOFError("the stream ended")

    async def event(self, timeout: float = 10.0) -> Frame:
        """The next frame that carries an event (pings and the retry hint are skipped)."""
        while True:
            frame = await self.frame(timeout)
            if frame.event is not None:
                return frame

    async def events(self, count: int, timeout: float = 10.0) -> list[Frame]:
        return [await self.event(timeout) for _ in range(count)]

    async def ended(self, timeout: float = 10.0) -> bool:
        try:
            async with asyncio.timeout(timeout):
                async for line in self._lines:
                    if line:
                        return False
        except TimeoutError:
            return False
        return True


def _frame(fields: dict[str, str], comment: str | None) -> Frame:
    data = json.loads(fields["data"]) if "data" in fields else None
    event_id = int(fields["id"]) if fields.get("id", "").isdigit() else None
    return Frame(event_id, fields.get("event"), data, comment)


@asynccontextmanager
async def sse(
    server: LiveServer | httpx.AsyncClient,
    user: User,
    path: str = "/api/v1/stream/sse",
    *,
    params: dict[str, Any] | None = None,
    last_event_id: int | None = None,
) -> AsyncIterator[SseReader]:
    headers = dict(user.headers)
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    client = server if isinstance(server, httpx.AsyncClient) else server.client
    async with client.stream("GET", path, params=params, headers=headers) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield SseReader(response)


async def create_task(server: LiveServer, user: User, **body: Any) -> uuid.UUID:
    """A task through the tasks API (a command task stays QUEUED: these servers run no
    worker); skips the test when the tasks feature is not installed."""
    if importlib.util.find_spec("taskgate.tasks.service") is None:
        pytest.skip("the tasks feature (taskgate.tasks) is not installed")
    response = await server.client.post(
        "/api/v1/tasks", json=body or {"commands": ["true"]}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["task_id"])


async def another_user(server: LiveServer, prefix: str) -> User:
    return await server.user(f"{prefix}{uuid.uuid4().hex[:6]}")


__all__ = [
    "Frame",
    "LiveServer",
    "SseReader",
    "another_user",
    "create_task",
    "create_user",
    "emit",
    "live_server",
    "sse",
]
