"""Per-subject streams: a task's, a run's, an execution's; ``done`` when the subject ends."""

from __future__ import annotations

import importlib.util
import uuid

import pytest

from tests.events.support import LiveServer, create_task, emit, sse
from tests.support.clients import User


async def test_task_stream_replays_and_ends_with_done(server: LiveServer, alice: User) -> None:
    # A text task with no model configured fails at once: its whole life is in the table.
    task_id = await create_task(server, alice, query="What is 2 + 2?")
    async with sse(server, alice, f"/api/v1/tasks/{task_id}/stream") as stream:
        events = [await stream.event()]
        while events[-1].event != "done":
            events.append(await stream.event())
        assert await stream.ended()
    types = [frame.event for frame in events]
    assert types[0] == "task.created"
    assert types[-2:] == ["task.failed", "done"]
    assert events[-1].data == {"reason": "task.failed"}
    assert all(frame.data["task_id"] == str(task_id) for frame in events[:-1])


async def test_done_closes_a_live_task_stream(server: LiveServer, alice: User) -> None:
    task_id = await create_task(server, alice)
    async with sse(server, alice, f"/api/v1/tasks/{task_id}/stream") as stream:
        assert (await stream.event()).event == "task.created"
        output = await emit(server.db, alice.id, "task.output.delta", task_id=task_id)
        assert (await stream.event()).id == output
        response = await server.client.post(
            f"/api/v1/tasks/{task_id}/cancel", json={"reason": "enough"}, headers=alice.headers
        )
        assert response.status_code == 202, response.text
        frame = await stream.event()
        while frame.event != "done":
            frame = await stream.event()
        assert frame.data == {"reason": "task.cancelled"}
        assert await stream.ended()


async def test_resuming_after_the_end_is_done_at_once(server: LiveServer, alice: User) -> None:
    task_id = await create_task(server, alice, query="fails without a model")
    path = "/api/v1/stream/sse"
    params = {"task_id": str(task_id)}
    async with sse(server, alice, path, params=params) as stream:
        frames = [await stream.event()]
        while frames[-1].event != "done":
            frames.append(await stream.event())
    last = frames[-2].id
    async with sse(server, alice, path, params=params, last_event_id=last) as stream:
        frame = await stream.event()
        assert (frame.event, frame.data) == ("done", {"reason": "task.failed"})
        assert await stream.ended()


async def test_shannon_clients_follow_a_task_as_workflow_id(
    server: LiveServer, alice: User
) -> None:
    task_id = await create_task(server, alice, query="no model here")
    params = {"workflow_id": str(task_id)}
    async with sse(server, alice, params=params) as stream:
        frames = [await stream.event()]
        while frames[-1].event != "done":
            frames.append(await stream.event())
    assert frames[0].event == "task.created"
    assert frames[-1].data == {"reason": "task.failed"}


async def test_someone_elses_task_is_404(server: LiveServer, alice: User, bob: User) -> None:
    task_id = await create_task(server, bob)
    for path in (f"/api/v1/tasks/{task_id}/stream", f"/api/v1/tasks/{uuid.uuid4()}/stream"):
        response = await server.client.get(path, headers=alice.headers)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"
    response = await server.client.get(
        "/api/v1/stream/sse", params={"task_id": str(task_id)}, headers=alice.headers
    )
    assert response.status_code == 404


async def test_run_stream_ends_with_its_task(server: LiveServer, alice: User, bob: User) -> None:
    if importlib.util.find_spec("taskgate.runs.service") is None:
        pytest.skip("the runs feature (taskgate.runs) is not installed")
    task_id = await create_task(server, alice)
    created = await server.client.post(
        "/api/v1/runs",
        json={"task_id": str(task_id), "name": "external", "status": "RUNNING"},
        headers=alice.headers,
    )
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    other = await server.client.get(f"/api/v1/runs/{run_id}/events", headers=bob.headers)
    assert other.status_code == 404
    async with sse(server, alice, f"/api/v1/runs/{run_id}/events") as stream:
        assert (await stream.event()).event == "run.created"
        step = await emit(server.db, alice.id, "run.step", run_id=uuid.UUID(run_id))
        assert (await stream.event()).id == step
        await emit(server.db, alice.id, "task.completed", task_id=task_id)
        done = await stream.event()
        assert (done.event, done.data) == ("done", {"reason": "task.completed"})


async def test_execution_stream_is_404_for_unknown_executions(
    server: LiveServer, alice: User
) -> None:
    response = await server.client.get(
        f"/api/v1/executions/{uuid.uuid4()}/stream", headers=alice.headers
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
