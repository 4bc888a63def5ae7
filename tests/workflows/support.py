"""Helpers for the workflow, trigger and approval tests: an app with a worker, a loopback
HTTP server that counts what it receives, and polling with deadlines."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from fastapi import FastAPI

from taskgate.db.session import Database
from taskgate.identity.user_service import ensure_first_admin
from taskgate.jobs import Worker
from taskgate.settings import Settings
from tests.support.clients import ADMIN_PASSWORD, User, create_user, login, running_app
from tests.support.sandbox_dirs import sandbox_data_dir as sandbox_dir
from tests.support.waiting import eventually

FINISHED = ("SUCCESS", "FAILED", "CANCELLED")


@dataclass
class Env:
    app: FastAPI
    client: httpx.AsyncClient
    admin: User
    alice: User

    @property
    def db(self) -> Database:
        db: Database = self.app.state.db
        return db


@asynccontextmanager
async def engine_app(
    settings_factory: Callable[..., Settings], *, with_worker: bool = True, **overrides: Any
) -> AsyncIterator[Env]:
    """An app (with an in-process worker unless ``with_worker=False``), an admin and alice."""
    with sandbox_dir() as data_dir:
        settings = settings_factory(**overrides).model_copy(update={"data_dir": data_dir})
        components = [Worker(concurrency=8)] if with_worker else []
        async with running_app(settings, components) as (app, client):  # type: ignore[arg-type]
            async with app.state.db.transaction() as session:
                await ensure_first_admin(session, ADMIN_PASSWORD)
            admin = await login(client, "admin", ADMIN_PASSWORD)
            exists = await client.post(
                "/api/v1/auth/login", json={"username": "alice", "password": "pw-alice-123"}
            )
            if exists.status_code == 200:  # a second app on the same database in one test
                alice = await login(client, "alice", "pw-alice-123")
            else:
                alice = await create_user(client, admin, "alice")
            yield Env(app, client, admin, alice)


async def wait_execution(
    client: httpx.AsyncClient,
    user: User,
    execution_id: str,
    statuses: tuple[str, ...] = FINISHED,
    *,
    timeout: float = 30.0,
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        response = await client.get(f"/api/v1/executions/{execution_id}", headers=user.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if body["status"] in statuses else None

    result: dict[str, Any] = await eventually(check, timeout=timeout)
    return result


async def create_workflow(client: httpx.AsyncClient, user: User, body: dict[str, Any]) -> str:
    response = await client.post("/api/v1/workflows", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def run(
    client: httpx.AsyncClient, user: User, workflow_id: str, payload: dict[str, Any] | None = None
) -> str:
    response = await client.post(
        f"/api/v1/workflows/{workflow_id}/run", json={"input": payload or {}}, headers=user.headers
    )
    assert response.status_code == 202, response.text
    return str(response.json()["execution_id"])


def node(node_id: str, type: str, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": type, "config": config, **extra}


def steps_by_key(detail: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["node_key"]: step for step in detail["steps"]}


class LoopbackServer:
    """A real HTTP server on 127.0.0.1 (outside the machine as far as the engine knows).

    ``/hit/<name>`` counts and answers 200 with what it received; ``/status/<code>/<name>``
    answers that status (and counts); ``/slow/<name>`` holds its first request until
    ``release`` is set (or 30 s), then answers like ``/hit``; ``/big/<name>`` sends 2 MiB.
    """

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()
        self.status_override: dict[str, int] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                parts = [p for p in self.path.split("?")[0].split("/") if p]
                kind, name = ([*parts, "", ""])[0], parts[-1] if parts else ""
                with server._lock:
                    server.hits[name] += 1
                    count = server.hits[name]
                    server.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body}
                    )
                if kind == "slow" and count == 1:
                    server.release.wait(30)
                status = server.status_override.get(name, 200)
                if kind == "status":
                    status = int(parts[1])
                if kind == "big":
                    self.send_response(200)
                    self.send_header("content-type", "text/plain")
                    self.end_headers()
                    self.wfile.write(b"x" * (2 * 1024 * 1024))
                    return
                reply = json.dumps(
                    {
                        "name": name,
                        "count": count,
                        "authorization": self.headers.get("authorization"),
                        "body": body,
                    }
                ).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except OSError:
                    pass  # the caller went away (a killed worker)

            do_GET = do_POST = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
