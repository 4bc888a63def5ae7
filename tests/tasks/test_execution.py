"""Running script and command tasks on a worker: results, failures, timeouts, cancellation."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from taskgate.settings import Settings
from tests.support.clients import User
from tests.tasks.conftest import worker_app
from tests.tasks.flows import events, get_task, submit, types_of, wait_for_status


def stored_output(job: dict[str, Any]) -> bytes:
    """The full output the job kept on disk."""
    return Path(job["output_path"]).read_bytes()


@pytest.fixture
async def app_client(
    settings_factory: Callable[..., Settings], sandbox_dir: Path
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with worker_app(settings_factory, sandbox_dir) as pair:
        yield pair


async def test_commands_task_completes_with_output_and_events(
    client: httpx.AsyncClient, alice: User
) -> None:
    created = await submit(client, alice, commands=["echo hello", "echo world >&2"])
    task = await wait_for_status(client, alice, created["task_id"])
    assert task["status"] == "COMPLETED", task
    assert "hello" in task["result"]
    assert "world" in task["result"]
    assert task["attempts"] == 1
    assert task["error"] is None
    assert task["started_at"]
    assert task["completed_at"]
    found = await events(client, alice, created["task_id"])
    kinds = types_of(found)
    assert kinds[:3] == ["task.created", "task.started", "job.started"]
    assert kinds[-2:] == ["job.completed", "task.completed"]
    assert set(kinds[3:-2]) == {"job.output"}
    output = "".join(e["payload"]["chunk"] for e in found if e["type"] == "job.output")
    assert "$ echo hello\nhello\n" in output
    assert "world\n" in output
    completed = found[-2]["payload"]
    assert completed["exit_code"] == 0
    assert completed["output_bytes"] > 0
    assert completed["truncated"] is False
    assert completed["duration_ms"] >= 0
    run_id = found[1]["run_id"]
    assert run_id
    assert all(e["run_id"] == run_id for e in found[1:])
    assert all(e["session_id"] == created["session_id"] for e in found)


async def test_python_script_runs_and_job_is_recorded(
    client: httpx.AsyncClient, alice: User
) -> None:
    created = await submit(client, alice, script={"language": "python", "content": "print(6 * 7)"})
    task = await wait_for_status(client, alice, created["task_id"])
    assert (task["status"], task["result"]) == ("COMPLETED", "42\n")
    jobs = (
        await client.get(f"/api/v1/jobs?task_id={created['task_id']}", headers=alice.headers)
    ).json()["results"]
    [job] = jobs
    assert (job["kind"], job["status"], job["exit_code"]) == ("sandbox", "COMPLETED", 0)
    assert job["output_excerpt"] == "42\n"
    assert job["output_bytes"] == 3
    assert job["node_id"]
    assert job["attempts"] == 1
    assert job["duration_ms"] is not None
    assert stored_output(job) == b"42\n"
    runs = (
        await client.get(f"/api/v1/runs?task_id={created['task_id']}", headers=alice.headers)
    ).json()["results"]
    assert [(r["status"], r["attempt"]) for r in runs] == [("COMPLETED", 1)]
    by_job = (await client.get(f"/api/v1/runs?job_id={job['id']}", headers=alice.headers)).json()[
        "results"
    ]
    assert [r["id"] for r in by_job] == [runs[0]["id"]]


async def test_nonzero_exit_fails_the_task(client: httpx.AsyncClient, alice: User) -> None:
    created = await submit(client, alice, commands=["echo partial", "exit 3", "echo never"])
    task = await wait_for_status(client, alice, created["task_id"])
    assert task["status"] == "FAILED"
    assert task["error"] == "exit code 3"
    assert "partial" in task["result"]
    assert "never" not in task["result"]
    kinds = types_of(await events(client, alice, created["task_id"]))
    assert kinds[-1] == "task.failed"
    assert kinds.count("task.failed") == 1


async def test_timeout_ends_in_timeout(client: httpx.AsyncClient, alice: User) -> None:
    created = await submit(client, alice, commands=["sleep 30"], timeout_seconds=1)
    task = await wait_for_status(client, alice, created["task_id"], timeout=15)
    assert task["status"] == "TIMEOUT"
    assert task["error_code"] == "TIMEOUT"
    assert types_of(await events(client, alice, created["task_id"]))[-1] == "task.timeout"


async def test_cancel_running_task_stops_it_quickly(client: httpx.AsyncClient, alice: User) -> None:
    created = await submit(client, alice, commands=["echo started", "sleep 30"])
    task_id = created["task_id"]
    deadline = time.monotonic() + 15
    while not any(
        e["type"] == "job.output" and "started" in e["payload"]["chunk"]
        for e in await events(client, alice, task_id)
    ):
        assert time.monotonic() < deadline, "the command never started"
    cancelled_at = time.monotonic()
    response = await client.post(
        f"/api/v1/tasks/{task_id}/cancel", json={"reason": "enough"}, headers=alice.headers
    )
    assert response.status_code == 202
    assert response.json()["success"] is True
    task = await wait_for_status(client, alice, task_id, "CANCELLED", timeout=10)
    assert time.monotonic() - cancelled_at < 3
    state = (
        await client.get(f"/api/v1/tasks/{task_id}/control-state", headers=alice.headers)
    ).json()
    assert state["is_cancelled"]
    assert state["cancel_reason"] == "enough"
    assert state["cancelled_by"] == "alice"
    kinds = types_of(await events(client, alice, task_id))
    assert kinds[-1] == "task.cancelled"
    assert kinds.count("task.cancelled") == 1
    [job] = (await client.get(f"/api/v1/jobs?task_id={task_id}", headers=alice.headers)).json()[
        "results"
    ]
    assert job["status"] == "CANCELLED"
    assert task["completed_at"] is not None
    again = await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=alice.headers)
    assert again.status_code == 409


async def test_pausing_a_running_command_task_is_409(
    client: httpx.AsyncClient, alice: User
) -> None:
    created = await submit(client, alice, commands=["sleep 30"])
    await wait_for_status(client, alice, created["task_id"], "RUNNING")
    response = await client.post(f"/api/v1/tasks/{created['task_id']}/pause", headers=alice.headers)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "CONFLICT"
    await client.post(f"/api/v1/tasks/{created['task_id']}/cancel", headers=alice.headers)
    await wait_for_status(client, alice, created["task_id"], "CANCELLED")


async def test_output_over_the_cap_is_truncated(
    settings_factory: Callable[..., Settings], sandbox_dir: Path
) -> None:
    from tests.support.clients import create_user, login

    async with worker_app(settings_factory, sandbox_dir, sandbox={"output_cap_bytes": 4096}) as (
        app,
        client,
    ):
        from taskgate.identity.user_service import ensure_first_admin

        async with app.state.db.transaction() as session:
            await ensure_first_admin(session, "admin-password-1")
        admin = await login(client, "admin", "admin-password-1")
        user = await create_user(client, admin, "carol")
        created = await submit(client, user, commands=["head -c 100000 /dev/zero | tr '\\0' x"])
        task = await wait_for_status(client, user, created["task_id"])
        assert task["status"] == "COMPLETED"
        [job] = (
            await client.get(f"/api/v1/jobs?task_id={created['task_id']}", headers=user.headers)
        ).json()["results"]
        assert job["output_truncated"] is True
        assert job["output_bytes"] > 100000
        assert len(job["output_excerpt"]) == 4096
        found = await events(client, user, created["task_id"])
        streamed = sum(len(e["payload"]["chunk"]) for e in found if e["type"] == "job.output")
        assert streamed == 4096
        assert len(stored_output(job)) == job["output_bytes"]


async def test_other_users_cannot_see_or_touch_tasks(
    client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    created = await submit(client, alice, commands=["echo mine"])
    task = await wait_for_status(client, alice, created["task_id"])
    task_id = task["task_id"]
    [job] = (await client.get(f"/api/v1/jobs?task_id={task_id}", headers=alice.headers)).json()[
        "results"
    ]
    [run] = (await client.get(f"/api/v1/runs?task_id={task_id}", headers=alice.headers)).json()[
        "results"
    ]
    for method, path in [
        ("GET", f"/api/v1/tasks/{task_id}"),
        ("GET", f"/api/v1/tasks/{task_id}/events"),
        ("GET", f"/api/v1/tasks/{task_id}/control-state"),
        ("POST", f"/api/v1/tasks/{task_id}/cancel"),
        ("POST", f"/api/v1/tasks/{task_id}/pause"),
        ("POST", f"/api/v1/tasks/{task_id}/resume"),
        ("GET", f"/api/v1/jobs/{job['id']}"),
        ("GET", f"/api/v1/runs/{run['id']}"),
        ("GET", f"/api/v1/runs/{run['id']}/logs"),
    ]:
        response = await client.request(method, path, headers=bob.headers)
        assert response.status_code == 404, (method, path, response.text)
    for path in ["/api/v1/tasks", "/api/v1/jobs", "/api/v1/runs"]:
        assert (await client.get(path, headers=bob.headers)).json()["results"] == []
    assert (await get_task(client, alice, task_id))["status"] == "COMPLETED"
