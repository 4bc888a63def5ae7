"""Executions run by a real worker: DAGs, retries, replay, cancel, secrets, templates."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import select

from taskgate.models import Event, ExecutionStep
from taskgate.settings import Settings
from tests.support.clients import create_user
from tests.workflows.support import (
    LoopbackServer,
    create_workflow,
    engine_app,
    node,
    run,
    steps_by_key,
    wait_execution,
)

SettingsFactory = Callable[..., Settings]


async def test_a_manual_run_renders_templates_and_records_every_state(
    settings_factory: SettingsFactory,
) -> None:
    async with engine_app(settings_factory) as env:
        client, alice = env.client, env.alice
        graph = {
            "nodes": [
                node("greet", "logging", {"msg": "Hello {{ input.name }}"}),
                node(
                    "shape",
                    "transform",
                    {"template": {"upper": "{{ input.name | upper }}", "n": "{{ input.n * 2 }}"}},
                ),
                node("after", "log", {"message": "{{ steps.shape.output.upper }}"}),
            ],
            "edges": [{"from": "greet", "to": "shape"}, {"from": "shape", "to": "after"}],
        }
        workflow_id = await create_workflow(client, alice, {"name": "hello", "graph": graph})
        response = await client.post(
            f"/api/v1/workflows/{workflow_id}/run",
            json={"input": {"name": "ada", "n": 21}},
            headers=alice.headers,
        )
        assert response.status_code == 202
        accepted = response.json()
        assert accepted["trace_id"] == response.headers["x-trace-id"]

        detail = await wait_execution(client, alice, accepted["execution_id"])
        assert detail["status"] == "SUCCESS", detail
        assert detail["workflow_version"] == 1
        assert detail["duration_ms"] is not None
        steps = steps_by_key(detail)
        assert steps["greet"]["output_data"]["message"] == "Hello ada"
        assert steps["shape"]["output_data"] == {"upper": "ADA", "n": 42}
        assert steps["after"]["output_data"]["message"] == "ADA"
        for step in steps.values():
            assert step["status"] == "SUCCESS"
            assert step["attempt"] == 1
            assert step["started_at"]
            assert step["finished_at"]
            assert step["duration_ms"] is not None

        async with env.db.transaction(write=False) as session:
            events = (
                await session.scalars(
                    select(Event)
                    .where(Event.execution_id == uuid.UUID(detail["id"]))
                    .order_by(Event.id)
                )
            ).all()
        types = [e.type for e in events]
        assert types[:2] == ["execution.created", "execution.started"]
        assert types[-1] == "execution.succeeded"
        assert types.count("step.started") == types.count("step.succeeded") == 3
        assert all(str(e.workflow_id) == workflow_id for e in events)

        listed = await client.get(
            f"/api/v1/executions?workflow={workflow_id}&status=SUCCESS", headers=alice.headers
        )
        assert [e["id"] for e in listed.json()["results"]] == [detail["id"]]
        assert listed.json()["results"][0]["workflow_name"] == "hello"
        none = await client.get("/api/v1/executions?status=FAILED", headers=alice.headers)
        assert none.json()["results"] == []
        later = await client.get(
            "/api/v1/executions", params={"since": detail["finished_at"]}, headers=alice.headers
        )
        assert later.json()["results"] == []
        window = await client.get(
            "/api/v1/executions",
            params={"since": "2020-01-01T00:00:00Z", "until": detail["finished_at"]},
            headers=alice.headers,
        )
        assert [e["id"] for e in window.json()["results"]] == [detail["id"]]
        bob = await create_user(client, env.admin, "bob")
        hidden = await client.get(f"/api/v1/executions/{detail['id']}", headers=bob.headers)
        assert hidden.status_code == 404


async def test_dag_with_parallel_branches_condition_and_a_sandboxed_task(
    settings_factory: SettingsFactory,
) -> None:
    async with engine_app(settings_factory) as env:
        client, alice = env.client, env.alice
        graph = {
            "nodes": [
                node("start", "log", {"message": "order {{ input.order_id }}"}),
                node("left", "transform", {"template": "left-{{ input.order_id }}"}),
                node("right", "task", {"commands": ["echo sandboxed-{{ input.order_id }}"]}),
                node("big", "condition", {"expression": "input.amount > 100"}),
                node("review", "log", {"message": "needs review"}),
                node("auto", "log", {"message": "auto approved"}),
                node(
                    "done",
                    "log",
                    {"message": "{{ steps.left.output }} {{ steps.right.output.result | trim }}"},
                ),
            ],
            "edges": [
                {"from": "start", "to": "left"},
                {"from": "start", "to": "right"},
                {"from": "start", "to": "big"},
                {"from": "big", "to": "review", "condition": "true"},
                {"from": "big", "to": "auto", "condition": "false"},
                {"from": "left", "to": "done"},
                {"from": "right", "to": "done"},
                {"from": "review", "to": "done"},
                {"from": "auto", "to": "done"},
            ],
        }
        workflow_id = await create_workflow(client, alice, {"name": "dag", "graph": graph})
        execution_id = await run(client, alice, workflow_id, {"order_id": 7, "amount": 250})
        detail = await wait_execution(client, alice, execution_id, timeout=60)
        assert detail["status"] == "SUCCESS", detail
        steps = steps_by_key(detail)
        assert steps["review"]["status"] == "SUCCESS"
        assert steps["auto"]["status"] == "SKIPPED"
        assert steps["big"]["output_data"] == {"result": True}
        right = steps["right"]
        assert right["task_id"] is not None
        assert right["output_data"]["status"] == "COMPLETED"
        assert right["output_data"]["exit_code"] == 0
        message = steps["done"]["output_data"]["message"]
        assert message.startswith("left-7 ")
        assert message.endswith("sandboxed-7")
        # The branches ran side by side: both started before either of them finished.
        assert steps["left"]["started_at"] < steps["right"]["finished_at"]
        task = await client.get(f"/api/v1/tasks/{right['task_id']}", headers=alice.headers)
        assert task.status_code == 200
        assert task.json()["status"] == "COMPLETED"


async def test_failed_step_retries_then_replay_succeeds(settings_factory: SettingsFactory) -> None:
    with LoopbackServer() as server:
        async with engine_app(settings_factory) as env:
            client, alice = env.client, env.alice
            server.status_override["orders"] = 503
            graph = {
                "nodes": [
                    node(
                        "fetch",
                        "http.request",
                        {
                            "url": f"{server.url}/hit/orders",
                            "method": "POST",
                            "json": {"id": "{{ input.id }}"},
                        },
                        retries={"max_attempts": 2, "backoff_seconds": 0.1},
                    ),
                    node("after", "log", {"message": "{{ steps.fetch.output.body.count }}"}),
                ],
                "edges": [{"from": "fetch", "to": "after"}],
            }
            workflow_id = await create_workflow(client, alice, {"name": "flaky", "graph": graph})
            execution_id = await run(client, alice, workflow_id, {"id": "A1"})
            failed = await wait_execution(client, alice, execution_id)
            assert failed["status"] == "FAILED"
            fetch = steps_by_key(failed)["fetch"]
            assert fetch["status"] == "FAILED"
            assert fetch["attempt"] == 2
            assert "HTTP 503" in fetch["error"]
            assert "after" not in steps_by_key(failed)  # never started
            assert "fetch" in failed["error_summary"]
            assert server.hits["orders"] == 2

            server.status_override.pop("orders")
            response = await client.post(
                f"/api/v1/executions/{execution_id}/replay", headers=alice.headers
            )
            assert response.status_code == 202, response.text
            replay = response.json()
            assert replay["execution_id"] != execution_id
            assert replay["message"]
            assert replay["trace_id"] == response.headers["x-trace-id"]
            done = await wait_execution(client, alice, replay["execution_id"])
            assert done["status"] == "SUCCESS", done["error_summary"]
            assert done["replay_of"] == execution_id
            assert done["attempt"] == 2
            assert done["input"] == {"id": "A1"}
            assert steps_by_key(done)["after"]["output_data"]["message"] == "3"
            assert server.requests[-1]["body"] == '{"id":"A1"}'


async def test_secrets_reach_the_request_but_never_the_record(
    settings_factory: SettingsFactory,
) -> None:
    token = "tok-very-secret-9876"
    with LoopbackServer() as server:
        async with engine_app(settings_factory) as env:
            client, alice = env.client, env.alice
            graph = {
                "nodes": [
                    node(
                        "call",
                        "http.request",
                        {
                            "url": f"{server.url}/hit/api",
                            "headers": {
                                "Authorization": "Bearer {{ secrets.TOKEN }}",
                                "X-Note": "{{ secrets.TOKEN }}",
                            },
                        },
                    ),
                ]
            }
            body = {"name": "secret", "graph": graph, "secrets": {"TOKEN": token}}
            workflow_id = await create_workflow(client, alice, body)
            execution_id = await run(client, alice, workflow_id)
            detail = await wait_execution(client, alice, execution_id)
            assert detail["status"] == "SUCCESS", detail
            assert server.requests[0]["headers"]["Authorization"] == f"Bearer {token}"
            call = steps_by_key(detail)["call"]
            assert call["input_data"]["headers"]["X-Note"] == "***"
            assert call["input_data"]["headers"]["Authorization"] == "***"
            # The server echoed the header back: the stored step has the value masked.
            async with env.db.transaction(write=False) as session:
                stored = await session.get(ExecutionStep, uuid.UUID(call["id"]))
                events = (await session.scalars(select(Event.payload))).all()
            assert stored is not None
            assert stored.input_data is not None
            assert stored.output_data["body"]["authorization"] == "Bearer ***"
            assert stored.input_data["headers"]["Authorization"] == "Bearer ***"
            assert token not in str(detail)
            assert token not in str(events)


async def test_runtime_template_escape_fails_the_step_and_leaks_nothing(
    settings_factory: SettingsFactory,
) -> None:
    async with engine_app(settings_factory) as env:
        client, alice = env.client, env.alice
        # Not detectable on save: the attribute name only arrives with the input.
        graph = {"nodes": [node("x", "log", {"message": "{{ input | attr(input.name) }}"})]}
        workflow_id = await create_workflow(client, alice, {"name": "sneaky", "graph": graph})
        execution_id = await run(client, alice, workflow_id, {"name": "__class__"})
        detail = await wait_execution(client, alice, execution_id)
        assert detail["status"] == "FAILED"
        step = steps_by_key(detail)["x"]
        assert step["status"] == "FAILED"
        assert step["output_data"] is None
        assert "unsafe template" in step["error"]
        assert "<class" not in step["error"]  # the sandbox refused; nothing was rendered


async def test_pinned_version_cancel_and_soft_delete(settings_factory: SettingsFactory) -> None:
    async with engine_app(settings_factory) as env:
        client, alice = env.client, env.alice
        graph = {
            "nodes": [
                node("wait", "delay", {"seconds": 60}),
                node("after", "log", {"message": "x"}),
            ],
            "edges": [{"from": "wait", "to": "after"}],
        }
        workflow_id = await create_workflow(client, alice, {"name": "slow", "graph": graph})
        execution_id = await run(client, alice, workflow_id)
        waiting = await wait_execution(client, alice, execution_id, ("WAITING",))
        assert steps_by_key(waiting)["wait"]["status"] == "WAITING"

        await client.patch(
            f"/api/v1/workflows/{workflow_id}", json={"description": "v2"}, headers=alice.headers
        )
        assert waiting["workflow_version"] == 1

        response = await client.post(
            f"/api/v1/executions/{execution_id}/cancel", headers=alice.headers
        )
        assert response.status_code == 202
        assert response.json()["success"] is True
        detail = await wait_execution(client, alice, execution_id)
        assert detail["status"] == "CANCELLED"
        assert steps_by_key(detail)["wait"]["status"] == "CANCELLED"
        again = await client.post(
            f"/api/v1/executions/{execution_id}/cancel", headers=alice.headers
        )
        assert again.status_code == 409

        second = await run(client, alice, workflow_id)
        second_detail = await wait_execution(client, alice, second, ("WAITING",))
        assert second_detail["workflow_version"] == 2

        assert (
            await client.delete(f"/api/v1/workflows/{workflow_id}", headers=alice.headers)
        ).status_code == 204
        still = await client.get(f"/api/v1/executions/{execution_id}", headers=alice.headers)
        assert still.status_code == 200
        assert still.json()["workflow_name"] == "slow"
        replay = await client.post(
            f"/api/v1/executions/{execution_id}/replay", headers=alice.headers
        )
        assert replay.status_code == 409
        await client.post(f"/api/v1/executions/{second}/cancel", headers=alice.headers)


async def test_parallelism_is_bounded(settings_factory: SettingsFactory) -> None:
    async with engine_app(settings_factory) as env:
        client, alice = env.client, env.alice
        fan = [node(f"n{i}", "delay", {"seconds": 0.3}) for i in range(4)]
        graph = {"nodes": fan, "edges": [], "config": {"max_parallel": 2}}
        workflow_id = await create_workflow(client, alice, {"name": "fan", "graph": graph})
        execution_id = await run(client, alice, workflow_id)
        detail = await wait_execution(client, alice, execution_id)
        assert detail["status"] == "SUCCESS"
        spans = sorted((s["started_at"], s["finished_at"]) for s in detail["steps"])
        for start, _ in spans:
            live = sum(1 for s, f in spans if s <= start < f)
            assert live <= 2
