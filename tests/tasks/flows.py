"""What task tests do over and over: submit a task, wait for a state, read its events."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.clients import User
from tests.support.waiting import eventually

FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}


async def submit(client: httpx.AsyncClient, user: User, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/tasks", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def get_task(client: httpx.AsyncClient, user: User, task_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/tasks/{task_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


async def wait_for_status(
    client: httpx.AsyncClient,
    user: User,
    task_id: str,
    statuses: set[str] | str | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Poll the task until it is in one of ``statuses`` (default: any final one)."""
    wanted = {statuses} if isinstance(statuses, str) else set(statuses or FINAL)
    last: list[dict[str, Any]] = []

    async def reached() -> dict[str, Any] | None:
        last[:] = [await get_task(client, user, task_id)]
        return last[0] if last[0]["status"] in wanted else None

    try:
        task: dict[str, Any] = await eventually(reached, timeout=timeout, what=f"{wanted}")
    except AssertionError as exc:
        raise AssertionError(
            f"task {task_id} is {last[0]['status']}, not {wanted}: {last[0]}"
        ) from exc
    return task


async def events(
    client: httpx.AsyncClient, user: User, task_id: str, **params: Any
) -> list[dict[str, Any]]:
    """Every event of the task, following ``next`` links."""
    found: list[dict[str, Any]] = []
    url: str | None = f"/api/v1/tasks/{task_id}/events"
    query: dict[str, Any] | None = params
    while url:
        response = await client.get(url, params=query, headers=user.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        found += page["results"]
        url, query = page["next"], None
    return found


def types_of(found: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in found]
