"""Many submissions controlled at once while a worker opens and runs their attempts: every
task still ends final, no request fails, and the server stays writable."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx

from taskgate.app import create_app
from taskgate.jobs import Worker
from taskgate.settings import Settings
from tests.support.clients import User
from tests.tasks.flows import FINAL, submit, wait_for_status
from tests.tasks.live_server import serve_in_thread

PAIRS = 48


async def _control(client: httpx.AsyncClient, user: User, task_id: str, action: str) -> int:
    response = await client.post(f"/api/v1/tasks/{task_id}/{action}", headers=user.headers)
    # 409: the task moved on meanwhile (already final, or running a command that cannot pause).
    assert response.status_code in (202, 409), response.text
    return response.status_code


async def _pair(client: httpx.AsyncClient, user: User, n: int) -> str:
    created = await submit(client, user, commands=["true"] if n % 3 else ["sleep 0.2"])
    task_id: str = created["task_id"]
    if n % 4 == 3:
        await asyncio.sleep(0)  # let the worker's claim race the cancel more often
    if n % 2 == 0:
        await _control(client, user, task_id, "cancel")
    elif await _control(client, user, task_id, "pause") == 202:
        # A paused task is resumed, and may be cancelled on its way again.
        await _control(client, user, task_id, "resume")
        if n % 5 == 0:
            await _control(client, user, task_id, "cancel")
    return task_id


async def _storm(client: httpx.AsyncClient, alice: User) -> None:
    task_ids = await asyncio.gather(*(_pair(client, alice, n) for n in range(PAIRS)))
    ended = [await wait_for_status(client, alice, task_id, FINAL) for task_id in task_ids]
    assert {task["status"] for task in ended} <= FINAL
    assert any(task["status"] == "CANCELLED" for task in ended)
    # Still writable and ready: a later task runs to its end.
    assert (await client.get("/readiness")).status_code == 200
    later = await submit(client, alice, commands=["true"])
    done = await wait_for_status(client, alice, later["task_id"], FINAL)
    assert done["status"] == "COMPLETED", done


async def test_concurrent_submit_and_control_end_final_and_writable(
    settings_factory: Callable[..., Settings], sandbox_dir: Path, alice: User
) -> None:
    settings = settings_factory().model_copy(update={"data_dir": sandbox_dir})
    # A server of its own, with its worker, on its own event loop, reached over TCP.
    with serve_in_thread(create_app(settings, [Worker(concurrency=4)])) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            await _storm(client, alice)
