"""Human approvals: a workflow waits, a person decides, the workflow goes on (or not)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from taskgate.approvals.service import request_task_approval
from taskgate.models import ChatSession, Event, Run, Task
from taskgate.settings import Settings
from tests.governance.support import bind
from tests.support.clients import create_user
from tests.support.waiting import eventually
from tests.workflows.support import (
    Env,
    create_workflow,
    engine_app,
    run,
    steps_by_key,
    wait_execution,
)

SettingsFactory = Callable[..., Settings]


def approval_graph(**config: Any) -> dict[str, Any]:
    return {
        "nodes": [
            {
                "id": "ask",
                "type": "approval",
                "config": {"message": "Refund {{ input.amount }}?", **config},
            },
            {
                "id": "refund",
                "type": "log",
                "config": {"message": "refund {{ steps.ask.output.action.amount | default('?') }}"},
            },
        ],
        "edges": [{"from": "ask", "to": "refund"}],
    }


async def pending_approval(env: Env, execution_id: str) -> dict[str, Any]:
    await wait_execution(env.client, env.alice, execution_id, ("WAITING",))
    response = await env.client.get(
        f"/api/v1/approvals?status=PENDING&execution_id={execution_id}", headers=env.alice.headers
    )
    [approval] = response.json()["results"]
    return approval  # type: ignore[no-any-return]


async def test_approve_with_a_modified_action(settings_factory: SettingsFactory) -> None:
    async with engine_app(settings_factory) as env:
        client, alice = env.client, env.alice
        workflow_id = await create_workflow(
            client, alice, {"name": "refunds", "graph": approval_graph()}
        )
        execution_id = await run(client, alice, workflow_id, {"amount": 120})
        approval = await pending_approval(env, execution_id)
        assert approval["message"] == "Refund 120?"
        assert approval["kind"] == "workflow_step"
        assert approval["proposed_action"]["node_key"] == "ask"
        assert approval["workflow_id"] == workflow_id
        assert approval["expires_at"] is not None

        response = await client.post(
            f"/api/v1/approvals/{approval['id']}/decision",
            json={"approved": True, "feedback": "ok, but less", "modified_action": {"amount": 100}},
            headers=alice.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "APPROVED"

        detail = await wait_execution(client, alice, execution_id)
        assert detail["status"] == "SUCCESS"
        steps = steps_by_key(detail)
        assert steps["ask"]["output_data"]["action"] == {"amount": 100}
        assert steps["ask"]["output_data"]["decided_by"] == "alice"
        assert steps["refund"]["output_data"]["message"] == "refund 100"

        again = await client.post(
            f"/api/v1/approvals/{approval['id']}/decision",
            json={"approved": False},
            headers=alice.headers,
        )
        assert again.status_code == 409
        async with env.db.transaction(write=False) as session:
            types = (
                await session.scalars(
                    select(Event.type).where(Event.execution_id == uuid.UUID(execution_id))
                )
            ).all()
        assert "approval.requested" in types
        assert "approval.decided" in types
        assert "execution.waiting" in types


async def test_reject_fails_the_step_with_the_feedback(settings_factory: SettingsFactory) -> None:
    async with engine_app(settings_factory) as env:
        client, alice = env.client, env.alice
        workflow_id = await create_workflow(
            client, alice, {"name": "refunds", "graph": approval_graph()}
        )
        execution_id = await run(client, alice, workflow_id, {"amount": 5000})
        approval = await pending_approval(env, execution_id)
        # Shannon's body names the approval (and what it belongs to) itself.
        response = await client.post(
            "/api/v1/approvals/decision",
            json={
                "workflow_id": execution_id,
                "approval_id": approval["id"],
                "approved": False,
                "feedback": "too much",
                "approved_by": "alice",
            },
            headers=alice.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["success"] is True
        detail = await wait_execution(client, alice, execution_id)
        assert detail["status"] == "FAILED"
        ask = steps_by_key(detail)["ask"]
        assert ask["status"] == "FAILED"
        assert "too much" in ask["error"]
        assert "refund" not in steps_by_key(detail)


async def test_the_starter_or_a_named_approver_of_the_project_decides(
    settings_factory: SettingsFactory,
) -> None:
    async with engine_app(settings_factory) as env:
        client, alice = env.client, env.alice
        bob = await create_user(client, env.admin, "bob")
        carol = await create_user(client, env.admin, "carol")
        dan = await create_user(client, env.admin, "dan")
        me = await client.get("/api/v1/users/me", headers=alice.headers)
        project_id = me.json()["default_project_id"]
        for user in (carol, dan):
            bound = await bind(client, alice, user.id, "member", project_id)
            assert bound.status_code == 201, bound.text
        graph = approval_graph(approvers=["carol"])
        workflow_id = await create_workflow(client, alice, {"name": "r", "graph": graph})
        execution_id = await run(client, alice, workflow_id, {"amount": 1})
        approval = await pending_approval(env, execution_id)
        url = f"/api/v1/approvals/{approval['id']}"
        # Bob holds no role in alice's project; dan is a member the approval does not name.
        assert (await client.get(url, headers=bob.headers)).status_code == 404
        refused = await client.post(f"{url}/decision", json={"approved": True}, headers=bob.headers)
        assert refused.status_code == 404
        unnamed = await client.post(f"{url}/decision", json={"approved": True}, headers=dan.headers)
        assert unnamed.status_code == 403
        mismatch = await client.post(
            "/api/v1/approvals/decision",
            json={
                "workflow_id": str(uuid.uuid4()),
                "approval_id": approval["id"],
                "approved": True,
            },
            headers=alice.headers,
        )
        assert mismatch.status_code == 404
        carols = await client.get(
            "/api/v1/approvals", headers={**carol.headers, "X-Tenant-ID": project_id}
        )
        assert [a["id"] for a in carols.json()["results"]] == [approval["id"]]
        decided = await client.post(
            f"{url}/decision", json={"approved": True}, headers=carol.headers
        )
        assert decided.status_code == 200
        detail = await wait_execution(client, alice, execution_id)
        assert detail["status"] == "SUCCESS"
        assert steps_by_key(detail)["ask"]["output_data"]["decided_by"] == "carol"


async def test_an_expired_approval_fails_the_step(settings_factory: SettingsFactory) -> None:
    async with engine_app(settings_factory) as env:
        client, alice = env.client, env.alice
        graph = approval_graph(timeout_seconds=1)
        workflow_id = await create_workflow(client, alice, {"name": "r", "graph": graph})
        execution_id = await run(client, alice, workflow_id, {"amount": 1})
        approval = await pending_approval(env, execution_id)
        detail = await wait_execution(client, alice, execution_id)
        assert detail["status"] == "FAILED"
        assert "expired" in steps_by_key(detail)["ask"]["error"]
        fetched = await client.get(f"/api/v1/approvals/{approval['id']}", headers=alice.headers)
        assert fetched.json()["status"] == "EXPIRED"
        late = await client.post(
            f"/api/v1/approvals/{approval['id']}/decision",
            json={"approved": True},
            headers=alice.headers,
        )
        assert late.status_code == 409


async def test_cancelling_the_execution_withdraws_its_approval(
    settings_factory: SettingsFactory,
) -> None:
    async with engine_app(settings_factory) as env:
        client, alice = env.client, env.alice
        workflow_id = await create_workflow(client, alice, {"name": "r", "graph": approval_graph()})
        execution_id = await run(client, alice, workflow_id, {"amount": 1})
        approval = await pending_approval(env, execution_id)
        await client.post(f"/api/v1/executions/{execution_id}/cancel", headers=alice.headers)
        fetched = await client.get(f"/api/v1/approvals/{approval['id']}", headers=alice.headers)
        assert fetched.json()["status"] == "CANCELLED"
        late = await client.post(
            f"/api/v1/approvals/{approval['id']}/decision",
            json={"approved": True},
            headers=alice.headers,
        )
        assert late.status_code == 409


async def test_a_task_tool_approval_resumes_the_task(settings_factory: SettingsFactory) -> None:
    async with engine_app(settings_factory, with_worker=False) as env:
        client, alice = env.client, env.alice
        me = await client.get("/api/v1/users/me", headers=alice.headers)
        project_id = uuid.UUID(me.json()["default_project_id"])
        async with env.db.transaction() as session:
            chat = ChatSession(owner_id=alice.id, project_id=project_id, title="t", context={})
            session.add(chat)
            await session.flush()
            task = Task(
                owner_id=alice.id,
                project_id=project_id,
                session_id=chat.id,
                kind="query",
                status="WAITING_APPROVAL",
                query="delete the logs",
                timeout_seconds=60,
            )
            session.add(task)
            await session.flush()
            arguments: dict[str, Any] = {"commands": ["rm -rf logs"]}
            pending = {"call_id": "call_1", "tool": "run_commands", "arguments": arguments}
            session.add(
                Run(
                    owner_id=alice.id,
                    project_id=project_id,
                    task_id=task.id,
                    name="attempt 1",
                    kind="agent",
                    status="WAITING_APPROVAL",
                    transcript={"pending": pending},
                )
            )
            approval = await request_task_approval(
                session, task, tool="run_commands", arguments=arguments
            )
            task_id, approval_id = task.id, approval.id

        listed = await client.get(f"/api/v1/approvals?task_id={task_id}", headers=alice.headers)
        [shown] = listed.json()["results"]
        assert shown["kind"] == "task_tool"
        assert shown["proposed_action"]["tool"] == "run_commands"

        response = await client.post(
            "/api/v1/approvals/decision",
            json={"workflow_id": str(task_id), "approval_id": str(approval_id), "approved": True},
            headers=alice.headers,
        )
        assert response.status_code == 200, response.text

        async def resumed() -> bool:
            task_view = await client.get(f"/api/v1/tasks/{task_id}", headers=alice.headers)
            return bool(task_view.json()["status"] == "QUEUED")

        await eventually(resumed, timeout=20)
        async with env.db.transaction(write=False) as session:
            run_row = await session.scalar(select(Run).where(Run.task_id == task_id))
        assert run_row is not None
        assert run_row.transcript["decision"]["approved"] is True
        assert run_row.transcript["decision"]["decided_by"] == "alice"
