"""Streams and the event list by role: whoever may read a project follows any of its subjects
and feeds, whoever caused the events; a user of another project follows nothing of it."""

from __future__ import annotations

from tests.events.support import LiveServer, sse
from tests.events.test_websocket import close_code, receive, subscribe, ws
from tests.governance.support import assert_error, denial, submit, team


async def test_a_viewer_follows_and_lists_anyones_events_of_the_project(
    server: LiveServer,
) -> None:
    studio = await team(server.client, server.admin)
    task_id = await submit(server.client, studio.headers(studio.member))

    path = f"/api/v1/tasks/{task_id}/stream"
    async with sse(server, studio.viewer, path) as stream:
        assert (await stream.event()).event == "task.created"
        cancelled = await server.client.post(
            f"/api/v1/tasks/{task_id}/cancel", headers=studio.member.headers
        )
        assert cancelled.status_code == 202, cancelled.text
        assert (await stream.event()).event == "task.cancelled"

    listed = await server.client.get("/api/v1/events", headers=studio.headers(studio.viewer))
    assert listed.status_code == 200, listed.text
    types = {(e["type"], e["task_id"]) for e in listed.json()["results"]}
    assert {("task.created", task_id), ("task.cancelled", task_id)} <= types
    own = await server.client.get("/api/v1/events", headers=studio.viewer.headers)
    assert [e for e in own.json()["results"] if e["task_id"] == task_id] == []


async def test_a_websocket_feed_carries_the_whole_project(server: LiveServer) -> None:
    studio = await team(server.client, server.admin)
    async with ws(server, studio.viewer, f"/api/v1/streams?project_id={studio.project_id}") as conn:
        await subscribe(conn, "tasks")
        await submit(server.client, studio.viewer.headers)  # its own project: not this feed
        task_id = await submit(server.client, studio.headers(studio.member))
        frame = await receive(conn)
    assert (frame["event"], frame["payload"]["task_id"]) == ("task.created", task_id)

    # A subject's channel needs no project named: it follows the subject's.
    async with ws(server, studio.viewer) as conn:
        await subscribe(conn, f"tasks:{task_id}", last_event_id=0)
        assert (await receive(conn))["event"] == "task.created"


async def test_a_user_of_another_project_follows_nothing_of_it(server: LiveServer) -> None:
    studio = await team(server.client, server.admin)
    outsider = studio.outsider
    task_id = await submit(server.client, studio.headers(studio.member))

    for params in (None, {"task_id": task_id}):
        path = f"/api/v1/tasks/{task_id}/stream" if params is None else "/api/v1/stream/sse"
        response = await server.client.get(path, params=params, headers=outsider.headers)
        assert_error(response, 404, "NOT_FOUND", "Task not found")
    for headers, params in (
        (studio.headers(outsider), None),
        (outsider.headers, {"project_id": studio.project_id}),
    ):
        for path in ("/api/v1/events", "/api/v1/stream/sse"):
            response = await server.client.get(path, params=params, headers=headers)
            assert_error(response, 404, "NOT_FOUND", "No such project")

    async with ws(server, outsider) as conn:
        await conn.send(f'{{"action": "subscribe", "channel": "tasks:{task_id}"}}')
        refused = await receive(conn)
    assert (refused["type"], refused["message"]) == ("error", "Task not found.")
    async with ws(server, outsider, f"/api/v1/streams?project_id={studio.project_id}") as conn:
        assert await close_code(conn) == 4404


async def test_a_project_key_follows_its_project_only(server: LiveServer) -> None:
    studio = await team(server.client, server.admin)
    task_id = await submit(server.client, studio.headers(studio.member))
    me = await server.client.get("/api/v1/users/me", headers=studio.viewer.headers)
    made = await server.client.post(
        "/api/v1/api-keys",
        json={"name": "home", "project_id": me.json()["default_project_id"]},
        headers=studio.viewer.headers,
    )
    assert made.status_code == 201, made.text
    home = {"X-API-Key": made.json()["key"]}
    response = await server.client.get(f"/api/v1/tasks/{task_id}/stream", headers=home)
    assert_error(response, 404, "NOT_FOUND", "Task not found")
    listed = await server.client.get(
        "/api/v1/events", headers={**home, "X-Tenant-ID": studio.project_id}
    )
    assert_error(listed, 404, "NOT_FOUND", "No such project")


async def test_a_refused_subscription_is_audited(server: LiveServer) -> None:
    studio = await team(server.client, server.admin)
    task_id = await submit(server.client, studio.headers(studio.member))
    async with ws(server, studio.outsider) as conn:
        await conn.send(f'{{"action": "subscribe", "channel": "tasks:{task_id}"}}')
        assert (await receive(conn))["type"] == "error"
    record = await denial(server.client, server.admin, studio.outsider, "task:read")
    assert (record["resource_id"], record["detail"]["status"]) == (task_id, 404)
