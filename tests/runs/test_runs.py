"""Runs clients report themselves, their logs, and reading runs and jobs."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.clients import User
from tests.tasks.flows import submit


async def post_run(client: httpx.AsyncClient, user: User, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/runs", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/api/v1/runs/{response.json()['id']}"
    run: dict[str, Any] = response.json()
    return run


async def test_external_run_with_children_and_filters(
    client: httpx.AsyncClient, alice: User
) -> None:
    task = await submit(client, alice, commands=["true"])
    parent = await post_run(client, alice, name="my agent", task_id=task["task_id"])
    assert (parent["status"], parent["kind"], parent["attempt"]) == ("RUNNING", "external", 1)
    assert parent["session_id"] == task["session_id"]
    child = await post_run(
        client, alice, name="helper", parent_run_id=parent["id"], status="COMPLETED"
    )
    assert child["finished_at"] is not None

    async def ids(**params: Any) -> list[str]:
        response = await client.get("/api/v1/runs", params=params, headers=alice.headers)
        assert response.status_code == 200, response.text
        return [r["id"] for r in response.json()["results"]]

    assert await ids() == [child["id"], parent["id"]]
    assert await ids(task_id=task["task_id"]) == [parent["id"]]
    assert await ids(parent_run_id=parent["id"]) == [child["id"]]
    assert await ids(status="COMPLETED") == [child["id"]]
    assert await ids(session_id=task["session_id"]) == [parent["id"]]
    assert await ids(since=child["created_at"]) == [child["id"]]
    assert await ids(until=child["created_at"]) == [parent["id"]]
    bad = await client.get("/api/v1/runs?status=DONE", headers=alice.headers)
    assert bad.status_code == 400


async def test_run_creation_checks_what_it_points_at(
    client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    theirs = await submit(client, bob, commands=["true"])
    their_run = await post_run(client, bob, name="bob's")
    for body, field in [
        ({"name": "x", "task_id": theirs["task_id"]}, "task_id"),
        ({"name": "x", "parent_run_id": their_run["id"]}, "parent_run_id"),
        ({"name": "x", "session_id": theirs["session_id"]}, "session_id"),
        ({"name": ""}, "name"),
        ({"name": "x", "status": "DONE"}, "status"),
    ]:
        response = await client.post("/api/v1/runs", json=body, headers=alice.headers)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["details"][0]["field"] == field


async def test_logs_append_and_read_in_order_with_time_window(
    client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    run = await post_run(client, alice, name="logger")
    url = f"/api/v1/runs/{run['id']}/logs"
    first = await client.post(
        url,
        json={
            "entries": [
                {"level": "info", "message": "one"},
                {"level": "error", "message": "two", "data": {"code": 7}},
            ]
        },
        headers=alice.headers,
    )
    assert (first.status_code, first.json()) == (201, {"appended": 2})
    await client.post(url, json={"entries": [{"message": "three"}]}, headers=alice.headers)
    logs = (await client.get(url, headers=alice.headers)).json()["results"]
    assert [(e["level"], e["message"], e["data"]) for e in logs] == [
        ("info", "one", {}),
        ("error", "two", {"code": 7}),
        ("info", "three", {}),
    ]
    later = (
        await client.get(url, params={"since": logs[2]["created_at"]}, headers=alice.headers)
    ).json()["results"]
    assert [e["message"] for e in later] == ["three"]
    earlier = (
        await client.get(url, params={"until": logs[2]["created_at"]}, headers=alice.headers)
    ).json()["results"]
    assert [e["message"] for e in earlier] == ["one", "two"]
    paged = (await client.get(url, params={"limit": 2}, headers=alice.headers)).json()
    assert [e["message"] for e in paged["results"]] == ["one", "two"]
    assert paged["next"]
    invalid: tuple[dict[str, Any], ...] = (
        {"entries": []},
        {"entries": [{"message": "x", "level": "loud"}]},
    )
    for body in invalid:
        assert (await client.post(url, json=body, headers=alice.headers)).status_code == 400
    denied = await client.post(url, json={"entries": [{"message": "x"}]}, headers=bob.headers)
    assert denied.status_code == 404
    assert (await client.get(url, headers=bob.headers)).status_code == 404
    assert (await client.get(f"/api/v1/runs/{run['id']}", headers=bob.headers)).status_code == 404


async def test_unknown_job_is_404(client: httpx.AsyncClient, alice: User) -> None:
    missing = "0190f3a0-0000-7000-8000-000000000000"
    assert (await client.get(f"/api/v1/jobs/{missing}", headers=alice.headers)).status_code == 404
    assert (await client.get("/api/v1/jobs", headers=alice.headers)).json()["results"] == []
