"""POST /events: dedupe (exact under concurrency) and the workflows events trigger."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from taskgate.settings import Settings
from tests.support.waiting import eventually
from tests.workflows.support import create_workflow, engine_app, wait_execution

SettingsFactory = Callable[..., Settings]

EVENT_WORKFLOW = {
    "name": "paid orders",
    "trigger_type": "event",
    "trigger_config": {"event_type": "order.*", "filter": {"payload": {"status": "paid"}}},
    "graph": {
        "nodes": [
            {
                "id": "note",
                "type": "log",
                "config": {"message": "{{ event.type }} {{ event.payload.order_id }}"},
            }
        ]
    },
}


async def test_an_event_starts_matching_workflows_once(settings_factory: SettingsFactory) -> None:
    async with engine_app(settings_factory) as env:
        client, alice = env.client, env.alice
        workflow_id = await create_workflow(client, alice, EVENT_WORKFLOW)

        body = {
            "type": "order.created",
            "payload": {"order_id": "A-1", "status": "paid"},
            "dedupe_key": "order-A-1",
        }
        first = await client.post("/api/v1/events", json=body, headers=alice.headers)
        assert first.status_code == 201, first.text
        accepted = first.json()
        assert accepted["trace_id"] == first.headers["x-trace-id"]
        assert len(accepted["execution_ids"]) == 1

        again = await client.post("/api/v1/events", json=body, headers=alice.headers)
        assert again.status_code == 200
        assert again.json()["event_id"] == accepted["event_id"]
        assert again.json()["execution_ids"] == []

        detail = await wait_execution(client, alice, accepted["execution_ids"][0])
        assert detail["status"] == "SUCCESS"
        assert detail["trigger"] == "event"
        assert detail["trigger_event_id"] == accepted["event_id"]
        assert detail["context"]["event_type"] == "order.created"
        assert detail["steps"][0]["output_data"]["message"] == "order.created A-1"

        unpaid = {"type": "order.created", "payload": {"order_id": "A-2", "status": "open"}}
        response = await client.post("/api/v1/events", json=unpaid, headers=alice.headers)
        assert response.json()["execution_ids"] == []
        other = {"type": "invoice.created", "payload": {"status": "paid"}}
        response = await client.post("/api/v1/events", json=other, headers=alice.headers)
        assert response.json()["execution_ids"] == []

        executions = await client.get(
            f"/api/v1/executions?workflow={workflow_id}", headers=alice.headers
        )
        assert len(executions.json()["results"]) == 1

        # Another user's identical dedupe key is theirs: a new event, none of alice's workflows.
        admins = await client.post("/api/v1/events", json=body, headers=env.admin.headers)
        assert admins.status_code == 201
        assert admins.json()["event_id"] != accepted["event_id"]
        assert admins.json()["execution_ids"] == []


async def test_dedupe_is_exact_under_concurrency(settings_factory: SettingsFactory) -> None:
    async with engine_app(settings_factory) as env:
        client, alice = env.client, env.alice
        workflow_id = await create_workflow(client, alice, EVENT_WORKFLOW)
        body = {
            "type": "order.paid",
            "payload": {"order_id": "C-9", "status": "paid"},
            "dedupe_key": "race",
        }
        responses = await asyncio.gather(
            *(client.post("/api/v1/events", json=body, headers=alice.headers) for _ in range(12))
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * 11 + [201], [r.text for r in responses]
        assert len({r.json()["event_id"] for r in responses}) == 1

        async def one_success() -> bool:
            listed = await client.get(
                f"/api/v1/executions?workflow={workflow_id}&status=SUCCESS", headers=alice.headers
            )
            return len(listed.json()["results"]) == 1

        await eventually(one_success, timeout=20)
        listed = await client.get(
            f"/api/v1/executions?workflow={workflow_id}", headers=alice.headers
        )
        assert len(listed.json()["results"]) == 1


async def test_event_rules_and_listing(settings_factory: SettingsFactory) -> None:
    async with engine_app(settings_factory, with_worker=False) as env:
        client, alice = env.client, env.alice
        forged = await client.post(
            "/api/v1/events", json={"type": "task.completed", "payload": {}}, headers=alice.headers
        )
        assert forged.status_code == 400
        assert forged.json()["error"]["details"][0]["field"] == "type"
        bad = await client.post("/api/v1/events", json={"type": "no spaces"}, headers=alice.headers)
        assert bad.status_code == 400
        unauthenticated = await client.post("/api/v1/events", json={"type": "a.b"})
        assert unauthenticated.status_code == 401

        for name in ("billing.charged", "billing.refunded", "shipping.sent"):
            response = await client.post(
                "/api/v1/events", json={"type": name, "payload": {"n": name}}, headers=alice.headers
            )
            assert response.status_code == 201
        await client.post("/api/v1/events", json={"type": "billing.x"}, headers=env.admin.headers)

        mine = await client.get("/api/v1/events?limit=2", headers=alice.headers)
        page = mine.json()
        assert [e["type"] for e in page["results"]] == ["shipping.sent", "billing.refunded"]
        assert page["next"] is not None
        rest = await client.get(page["next"], headers=alice.headers)
        assert [e["type"] for e in rest.json()["results"]] == ["billing.charged"]

        billing = await client.get("/api/v1/events?type=billing.*", headers=alice.headers)
        assert {e["type"] for e in billing.json()["results"]} == {
            "billing.charged",
            "billing.refunded",
        }
        exact = await client.get("/api/v1/events?type=shipping.sent", headers=alice.headers)
        assert [e["payload"] for e in exact.json()["results"]] == [{"n": "shipping.sent"}]
