"""Listing tasks (keyset and the Shannon offset form) and paging through a task's events."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.clients import User
from tests.tasks.flows import submit


async def list_tasks(client: httpx.AsyncClient, user: User, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/tasks", params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def test_filters(client: httpx.AsyncClient, alice: User, bob: User) -> None:
    first = await submit(client, alice, commands=["echo 1"], labels=["nightly", "db"])
    second = await submit(
        client, alice, commands=["echo 2"], labels=["db"], session_id=first["session_id"]
    )
    failed = await submit(client, alice, query="Summarise the deploy LOG please")
    await submit(client, bob, commands=["echo bob"], labels=["nightly"])

    def ids(page: dict[str, Any]) -> list[str]:
        return [t["task_id"] for t in page["results"]]

    everything = await list_tasks(client, alice)
    assert ids(everything) == [failed["task_id"], second["task_id"], first["task_id"]]
    assert ids(await list_tasks(client, alice, status="failed")) == [failed["task_id"]]
    assert ids(await list_tasks(client, alice, status="QUEUED,FAILED")) == ids(everything)
    assert ids(await list_tasks(client, alice, label="nightly")) == [first["task_id"]]
    assert ids(await list_tasks(client, alice, label="db")) == [second["task_id"], first["task_id"]]
    assert ids(await list_tasks(client, alice, search="deploy log")) == [failed["task_id"]]
    assert ids(await list_tasks(client, alice, session_id=first["session_id"])) == [
        second["task_id"],
        first["task_id"],
    ]
    after = await list_tasks(client, alice, created_after=second["created_at"])
    assert ids(after) == [failed["task_id"]]
    before = await list_tasks(client, alice, created_before=second["created_at"])
    assert ids(before) == [first["task_id"]]
    bad = await client.get("/api/v1/tasks?status=DONE", headers=alice.headers)
    assert bad.status_code == 400
    assert bad.json()["error"]["details"][0]["field"] == "status"


async def test_keyset_pages_and_shannon_offset_form(client: httpx.AsyncClient, alice: User) -> None:
    created = [(await submit(client, alice, commands=[f"echo {i}"]))["task_id"] for i in range(5)]
    newest_first = list(reversed(created))
    seen: list[str] = []
    url: str | None = "/api/v1/tasks?limit=2"
    while url:
        page = (await client.get(url, headers=alice.headers)).json()
        seen += [t["task_id"] for t in page["results"]]
        url = page["next"]
    assert seen == newest_first
    shannon = await list_tasks(client, alice, limit=2, offset=1)
    assert shannon["total_count"] == 5
    assert [t["task_id"] for t in shannon["tasks"]] == newest_first[1:3]
    assert "results" not in shannon
    oldest = await list_tasks(client, alice, ordering="created_at", limit=1)
    assert oldest["results"][0]["task_id"] == created[0]


async def test_events_page_with_after_and_types(client: httpx.AsyncClient, alice: User) -> None:
    created = await submit(client, alice, commands=["true"])
    task_id = created["task_id"]
    for action in ["pause", "resume", "pause", "resume"]:
        response = await client.post(f"/api/v1/tasks/{task_id}/{action}", headers=alice.headers)
        assert response.status_code == 202
    url = f"/api/v1/tasks/{task_id}/events"
    page = (await client.get(url, params={"limit": 2}, headers=alice.headers)).json()
    assert [e["type"] for e in page["results"]] == ["task.created", "task.paused"]
    assert page["next"] is not None
    rest = (await client.get(page["next"], headers=alice.headers)).json()
    assert [e["type"] for e in rest["results"]] == ["task.resumed", "task.paused"]
    last = (await client.get(rest["next"], headers=alice.headers)).json()
    assert [e["type"] for e in last["results"]] == ["task.resumed"]
    assert last["next"] is None
    ids = [e["id"] for e in page["results"] + rest["results"] + last["results"]]
    assert ids == sorted(ids)
    after = (await client.get(url, params={"after": ids[2]}, headers=alice.headers)).json()[
        "results"
    ]
    assert [e["id"] for e in after] == ids[3:]
    paused = (await client.get(url, params={"types": "task.paused"}, headers=alice.headers)).json()[
        "results"
    ]
    assert [e["id"] for e in paused] == [ids[1], ids[3]]
    event = page["results"][0]
    assert set(event) == {
        "id",
        "type",
        "created_at",
        "task_id",
        "run_id",
        "job_id",
        "execution_id",
        "session_id",
        "payload",
    }
    assert event["task_id"] == task_id
    assert event["session_id"] == created["session_id"]
    for bad in ({"limit": 0}, {"limit": 101}, {"after": -1}):
        response = await client.get(url, params=bad, headers=alice.headers)
        assert response.status_code == 400
