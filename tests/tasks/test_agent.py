"""Text tasks: the agent loop against a fake OpenAI-compatible server, end to end."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from taskgate.db.session import Database
from taskgate.settings import Settings
from taskgate.tasks import repository
from taskgate.tasks.service import ApprovalDecision, resume_after_approval
from tests.fakes.openai_server import FakeOpenAI
from tests.support.clients import User
from tests.tasks.conftest import worker_app
from tests.tasks.flows import events, get_task, submit, types_of, wait_for_status

PRICES = {"fake-model": (1.0, 2.0)}


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-test") as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeOpenAI) -> FakeOpenAI:
    fake_server.reset()
    return fake_server


@pytest.fixture
async def app_client(
    settings_factory: Callable[..., Settings], sandbox_dir: Path, fake: FakeOpenAI
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    model = {
        "base_url": fake.base_url,
        "api_key": "sk-test",
        "model": "fake-model",
        "prices": PRICES,
        "timeout_seconds": 10,
    }
    async with worker_app(settings_factory, sandbox_dir, model=model) as pair:
        yield pair


def tool_messages(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


async def test_agent_runs_a_command_streams_and_verifies(
    client: httpx.AsyncClient, alice: User, fake: FakeOpenAI
) -> None:
    fake.add_reply(
        tool_calls=[("run_commands", {"commands": ["echo from-sandbox"]})], usage=(10, 5)
    )
    fake.add_reply(text="The sandbox said from-sandbox, so the answer is 42", usage=(20, 7))
    fake.add_reply(text='{"passed": true, "reason": "mentions 42"}', usage=(5, 2))
    created = await submit(
        client, alice, query="Run echo and tell me", acceptance_criteria=["mentions 42"]
    )
    task = await wait_for_status(client, alice, created["task_id"])
    assert task["status"] == "COMPLETED", task
    assert task["result"] == "The sandbox said from-sandbox, so the answer is 42"
    assert task["usage"] == {
        "input_tokens": 35,
        "output_tokens": 14,
        "total_tokens": 49,
        "cost_usd": pytest.approx((35 * 1.0 + 14 * 2.0) / 1_000_000),
    }
    assert (task["model_used"], task["provider"]) == ("fake-model", "openai")
    assert "from-sandbox" in tool_messages(fake.requests[1])[0]
    found = await events(client, alice, created["task_id"])
    kinds = [
        f"{e['type']}:{e['payload'].get('kind')}" if e["type"].startswith("job.") else e["type"]
        for e in found
    ]
    order = [
        "task.started",
        "job.started:model",
        "agent.tool_call",
        "job.started:sandbox",
        "job.output:None",
        "job.completed:sandbox",
        "agent.tool_result",
        "task.output.delta",
        "agent.verification_passed",
        "job.completed:model",
        "task.completed",
    ]
    positions = [kinds.index(kind) for kind in order]
    assert positions == sorted(positions), kinds
    assert kinds.count("task.completed") == 1
    streamed = "".join(e["payload"]["delta"] for e in found if e["type"] == "task.output.delta")
    assert streamed == task["result"]
    deltas = [e for e in found if e["type"] == "task.output.delta"]
    assert len(deltas) < len(task["result"].split())  # batched, not one event per token
    output = [e for e in found if e["type"] == "job.output"]
    assert "from-sandbox" in "".join(e["payload"]["chunk"] for e in output)
    jobs = (
        await client.get(f"/api/v1/jobs?task_id={task['task_id']}", headers=alice.headers)
    ).json()["results"]
    assert sorted(j["kind"] for j in jobs) == ["model", "sandbox"]
    assert all(j["status"] == "COMPLETED" for j in jobs)
    [run] = (
        await client.get(f"/api/v1/runs?task_id={task['task_id']}", headers=alice.headers)
    ).json()["results"]
    detail = (await client.get(f"/api/v1/runs/{run['id']}", headers=alice.headers)).json()
    assert detail["usage"]["total_tokens"] == 49
    assert detail["transcript"]["verification"] == {"passed": True, "reason": "mentions 42"}
    roles = [m["role"] for m in detail["transcript"]["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant"]


async def test_failed_verification_fails_the_task(
    client: httpx.AsyncClient, alice: User, fake: FakeOpenAI
) -> None:
    fake.add_reply(text="It is 41")
    fake.add_reply(text='{"passed": false, "reason": "not 42"}')
    created = await submit(client, alice, query="What is 6*7?", acceptance_criteria=["is 42"])
    task = await wait_for_status(client, alice, created["task_id"])
    assert (task["status"], task["error_code"]) == ("FAILED", "VERIFICATION_FAILED")
    assert "not 42" in task["error"]
    kinds = types_of(await events(client, alice, created["task_id"]))
    assert "agent.verification_failed" in kinds
    assert kinds[-1] == "task.failed"


async def test_pause_between_steps_then_resume_to_completion(
    client: httpx.AsyncClient, alice: User, fake: FakeOpenAI
) -> None:
    fake.add_reply(tool_calls=[("run_commands", {"commands": ["echo step-one"]})], delay=1.0)
    fake.add_reply(text="All done after step-one")
    created = await submit(client, alice, query="Do it in steps")
    task_id = created["task_id"]
    deadline = time.monotonic() + 15
    while not fake.requests:  # pause while the model is answering the first step
        assert time.monotonic() < deadline, "the model was never asked"
        await asyncio.sleep(0.01)
    response = await client.post(f"/api/v1/tasks/{task_id}/pause", headers=alice.headers)
    assert response.status_code == 202, response.text
    assert "next step" in response.json()["message"]
    paused = await wait_for_status(client, alice, task_id, "PAUSED")
    assert paused["result"] is None
    assert len(fake.requests) == 1
    response = await client.post(f"/api/v1/tasks/{task_id}/resume", headers=alice.headers)
    assert response.status_code == 202
    task = await wait_for_status(client, alice, task_id)
    assert (task["status"], task["result"]) == ("COMPLETED", "All done after step-one")
    assert task["attempts"] == 2
    # The resumed attempt did not ask the model again for the step it had; it ran the tool.
    assert len(fake.requests) == 2
    assert "step-one" in tool_messages(fake.requests[1])[0]
    kinds = types_of(await events(client, alice, task_id))
    assert kinds.count("agent.tool_call") == 1
    for kind in ("task.pause_requested", "task.paused", "task.resumed", "task.completed"):
        assert kind in kinds
    runs = (
        await client.get(
            f"/api/v1/runs?task_id={task_id}&ordering=created_at", headers=alice.headers
        )
    ).json()["results"]
    assert [(r["attempt"], r["status"]) for r in runs] == [(1, "PAUSED"), (2, "COMPLETED")]


async def test_approval_suspends_and_the_decision_resumes(
    client: httpx.AsyncClient, app: FastAPI, alice: User, fake: FakeOpenAI
) -> None:
    fake.add_reply(tool_calls=[("run_commands", {"commands": ["echo approved-run"]})])
    fake.add_reply(text="Ran it")
    created = await submit(
        client,
        alice,
        query="Run something risky",
        context={"approval_required_tools": ["run_commands"]},
    )
    task_id = created["task_id"]
    waiting = await wait_for_status(client, alice, task_id, "WAITING_APPROVAL")
    assert waiting["completed_at"] is None
    found = await events(client, alice, task_id)
    suspended = [e for e in found if e["type"] == "task.waiting_approval"]
    assert suspended[0]["payload"]["tool"] == "run_commands"
    assert suspended[0]["payload"]["arguments"] == {"commands": ["echo approved-run"]}
    db: Database = app.state.db
    async with db.transaction() as session:
        task = await repository.task_for_update(session, uuid.UUID(task_id))
        assert task is not None
        await resume_after_approval(session, task, ApprovalDecision(True, "fine", "alice"))
    task_out = await wait_for_status(client, alice, task_id)
    assert (task_out["status"], task_out["result"]) == ("COMPLETED", "Ran it")
    assert "approved-run" in tool_messages(fake.requests[1])[0]
    assert len(fake.requests) == 2


async def test_denied_approval_is_told_to_the_model(
    client: httpx.AsyncClient, app: FastAPI, alice: User, fake: FakeOpenAI
) -> None:
    fake.add_reply(tool_calls=[("run_commands", {"commands": ["rm -rf /data"]})])
    fake.add_reply(text="Understood, I did not run it")
    created = await submit(
        client, alice, query="Clean up", context={"approval_required_tools": ["run_commands"]}
    )
    await wait_for_status(client, alice, created["task_id"], "WAITING_APPROVAL")
    db: Database = app.state.db
    async with db.transaction() as session:
        task = await repository.task_for_update(session, uuid.UUID(created["task_id"]))
        assert task is not None
        await resume_after_approval(session, task, ApprovalDecision(False, "too risky"))
    done = await wait_for_status(client, alice, created["task_id"])
    assert done["status"] == "COMPLETED"
    [answer] = tool_messages(fake.requests[1])
    assert "not approved" in answer
    assert "too risky" in answer
    jobs = (
        await client.get(f"/api/v1/jobs?task_id={created['task_id']}", headers=alice.headers)
    ).json()["results"]
    assert [j["kind"] for j in jobs] == ["model", "model"]


async def test_subtask_runs_as_a_child_task(
    client: httpx.AsyncClient, alice: User, fake: FakeOpenAI
) -> None:
    fake.add_reply(tool_calls=[("spawn_subtask", {"query": "What is the capital of France?"})])
    fake.add_reply(text="Paris")
    fake.add_reply(text="The sub-agent says Paris")
    created = await submit(client, alice, query="Ask a helper")
    task = await wait_for_status(client, alice, created["task_id"])
    assert (task["status"], task["result"]) == ("COMPLETED", "The sub-agent says Paris")
    children = [
        t
        for t in (await client.get("/api/v1/tasks", headers=alice.headers)).json()["results"]
        if t["parent_task_id"] == task["task_id"]
    ]
    assert [(c["status"], c["result"]) for c in children] == [("COMPLETED", "Paris")]
    assert children[0]["context"]["parent_task_id"] == task["task_id"]
    [parent_run] = (
        await client.get(f"/api/v1/runs?task_id={task['task_id']}", headers=alice.headers)
    ).json()["results"]
    sub_runs = (
        await client.get(f"/api/v1/runs?parent_run_id={parent_run['id']}", headers=alice.headers)
    ).json()["results"]
    assert [(r["task_id"], r["kind"]) for r in sub_runs] == [(children[0]["task_id"], "subagent")]
    assert "Paris" in tool_messages(fake.requests[2])[0]


async def test_retryable_model_error_retries_then_succeeds(
    client: httpx.AsyncClient, alice: User, fake: FakeOpenAI
) -> None:
    fake.add_reply(status=503)
    fake.add_reply(text="Worked the second time")
    created = await submit(client, alice, query="Try hard")
    task = await wait_for_status(client, alice, created["task_id"])
    assert (task["status"], task["result"]) == ("COMPLETED", "Worked the second time")
    assert task["attempts"] == 2
    kinds = types_of(await events(client, alice, created["task_id"]))
    assert "task.retrying" in kinds
    assert kinds.count("task.started") == 2


async def test_refused_model_call_fails_with_its_code(
    client: httpx.AsyncClient, alice: User, fake: FakeOpenAI
) -> None:
    fake.add_reply(status=400, error_body={"error": {"message": "bad request", "type": "x"}})
    created = await submit(client, alice, query="Break")
    task = await wait_for_status(client, alice, created["task_id"])
    assert (task["status"], task["error_code"]) == ("FAILED", "MODEL_ERROR")
    assert task["attempts"] == 1


async def test_session_history_reaches_the_model(
    client: httpx.AsyncClient, alice: User, fake: FakeOpenAI
) -> None:
    fake.add_reply(text="Nice to meet you, Ada")
    first = await submit(client, alice, query="My name is Ada")
    await wait_for_status(client, alice, first["task_id"], "COMPLETED")
    fake.add_reply(text="You are Ada")
    second = await submit(client, alice, query="Who am I?", session_id=first["session_id"])
    await wait_for_status(client, alice, second["task_id"], "COMPLETED")
    sent = [(m["role"], m["content"]) for m in fake.requests[1]["messages"][1:]]
    assert sent == [
        ("user", "My name is Ada"),
        ("assistant", "Nice to meet you, Ada"),
        ("user", "Who am I?"),
    ]
    assert json.dumps(fake.requests[1]).count("Ada") >= 2
    assert (await get_task(client, alice, second["task_id"]))["session_id"] == first["session_id"]
