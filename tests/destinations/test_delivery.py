"""Deliveries end to end: a real worker and dispatcher, a real receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from ipaddress import ip_address
from typing import Any

import pytest

from taskgate.destinations.jobs import backoff_seconds
from taskgate.settings import DeliverySettings
from tests.conftest import AppFactory
from tests.destinations.receiver import DEADLINE_SECONDS, receiver
from tests.destinations.support import Delivering, delivering_app
from tests.destinations.test_destinations_api import SECRET, create_destination, webhook_body
from tests.destinations.test_subscriptions_api import subscribe
from tests.support.waiting import eventually


async def hook_for(
    env: Delivering, url: str, pattern: str = "task.*", **extra: Any
) -> dict[str, Any]:
    destination = await create_destination(env.client, env.admin, webhook_body(url, **extra))
    await subscribe(env.client, env.admin, destination["id"], pattern)
    return destination


async def test_a_failing_delivery_is_retried_and_holds_later_ones_back(
    app_factory: AppFactory,
) -> None:
    async with (
        delivering_app(app_factory) as env,
        receiver(secret=SECRET, fail_first=2) as hook,
    ):
        destination = await hook_for(env, hook.url())
        owner = env.admin.id
        first = await env.emit(owner, "task.created", payload={"query": "one"})
        second = await env.emit(owner, "task.started", payload={"status": "RUNNING"})
        third = await env.emit(owner, "task.completed", payload={"status": "COMPLETED"})

        requests = await hook.wait_for(5)
        await env.wait_dispatched(third)

        assert [r.json()["id"] for r in requests] == [first, first, first, second, third]
        assert all(r.signature_ok for r in requests)
        # A retry is the same message: receivers deduplicate on webhook-id.
        assert {r.headers["webhook-id"] for r in requests[:3]} == {str(first)}
        body = requests[0].json()
        assert body["type"] == "task.created"
        assert body["payload"] == {"query": "one"}
        assert set(body) >= {"id", "type", "created_at", "task_id", "payload"}

        log = await env.deliveries(destination["id"])
        assert [(d["event_id"], d["status"], d["attempts"]) for d in log] == [
            (first, "succeeded", 3),
            (second, "succeeded", 1),
            (third, "succeeded", 1),
        ]
        assert [a["status_code"] for a in log[0]["attempt_log"]] == [500, 500, 200]
        assert log[0]["attempt_log"][0]["error"] == "HTTP 500"
        assert log[0]["attempt_log"][0]["response_excerpt"] == '{"error": "try again later"}'
        newest_first = await env.client.get(
            f"/api/v1/destinations/{destination['id']}/deliveries", headers=env.admin.headers
        )
        assert [d["event_id"] for d in newest_first.json()["results"]] == [third, second, first]
        fetched = await env.client.get(
            f"/api/v1/destinations/{destination['id']}", headers=env.admin.headers
        )
        assert fetched.json()["consecutive_failures"] == 0  # the success reset the count


async def test_a_success_resets_the_failure_count(app_factory: AppFactory) -> None:
    overrides = {"delivery": {"disable_after_failures": 3}}
    async with (
        delivering_app(app_factory, **overrides) as env,
        receiver(script=[500, 500, 200, 500, 500]) as hook,
    ):
        destination = await hook_for(env, hook.url(), secret=None)
        await env.emit(env.admin.id, "task.created")
        last = await env.emit(env.admin.id, "task.completed")
        await hook.wait_for(6)
        await env.wait_dispatched(last)
        fetched = await env.client.get(
            f"/api/v1/destinations/{destination['id']}", headers=env.admin.headers
        )
        log = await env.deliveries(destination["id"])
    # Four failures in all, never three in a row: the destination stays enabled.
    assert fetched.json()["is_active"] is True
    assert fetched.json()["consecutive_failures"] == 0
    assert [d["status"] for d in log] == ["succeeded"] * 2


async def test_consecutive_failures_disable_the_destination(app_factory: AppFactory) -> None:
    overrides = {"delivery": {"disable_after_failures": 3}}
    async with (
        delivering_app(app_factory, **overrides) as env,
        receiver(always_fail=True, fail_status=503) as hook,
    ):
        destination = await hook_for(env, hook.url(), pattern="*")
        path = f"/api/v1/destinations/{destination['id']}"
        await env.emit(env.admin.id, "task.created")

        async def disabled() -> bool:
            response = await env.client.get(path, headers=env.admin.headers)
            return response.json()["is_active"] is False

        await eventually(disabled, timeout=DEADLINE_SECONDS)
        state = (await env.client.get(path, headers=env.admin.headers)).json()
        [announcement] = await env.events_of_type("destination.disabled")
        await env.wait_dispatched(announcement.id)
        [delivery] = await env.deliveries(destination["id"])

        assert len(hook.requests) == 3
        assert state["consecutive_failures"] == 3
        assert "3 consecutive failed deliveries" in state["disabled_reason"]
        assert "HTTP 503" in state["disabled_reason"]
        assert announcement.owner_id == env.admin.id
        assert announcement.payload["destination_id"] == destination["id"]
        # The announcement is not sent to the destination it is about.
        assert (delivery["status"], delivery["attempts"]) == ("failed", 3)

        reenabled = await env.client.patch(
            path, json={"is_active": True}, headers=env.admin.headers
        )
        assert reenabled.json()["consecutive_failures"] == 0
        assert reenabled.json()["disabled_reason"] is None


async def test_a_delivery_dies_when_the_retry_period_ends(app_factory: AppFactory) -> None:
    overrides = {"delivery": {"retry_period_seconds": 0.5}}
    async with (
        delivering_app(app_factory, **overrides) as env,
        receiver(always_fail=True) as hook,
    ):
        destination = await hook_for(env, hook.url())
        event_id = await env.emit(env.admin.id, "task.failed")
        await env.wait_dispatched(event_id)
        [delivery] = await env.deliveries(destination["id"])
    assert delivery["status"] == "dead"
    # As many attempts as fit in the period (at least one; how many depends on the load).
    assert delivery["attempts"] == len(hook.requests) >= 1
    assert delivery["last_status_code"] == 500
    assert delivery["next_attempt_at"] is None


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    settings = DeliverySettings(base_backoff_seconds=1, max_backoff_seconds=30)
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (5, 16), (6, 30), (20, 30)]:
        delays = {backoff_seconds(settings, attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1


@pytest.fixture
async def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Host name → addresses, answered by the event loop's getaddrinfo (others as usual)."""
    records: dict[str, list[str]] = {}
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in records:
            return await real(host, port, *args, **kwargs)
        family = {4: socket.AF_INET, 6: socket.AF_INET6}
        return [
            (family[ip_address(a).version], socket.SOCK_STREAM, 6, "", (a, int(port)))
            for a in records[host]
        ]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return records


async def test_a_host_that_starts_resolving_to_loopback_is_refused_at_delivery(
    app_factory: AppFactory, fake_dns: dict[str, list[str]]
) -> None:
    overrides = {"outbound": {"allow_loopback": False}, "delivery": {"retry_period_seconds": 1}}
    async with delivering_app(app_factory, **overrides) as env, receiver() as hook:
        fake_dns["hooks.example.test"] = ["93.184.216.34"]  # public when the URL is saved
        url = f"http://hooks.example.test:{hook.port}/hook"
        destination = await hook_for(env, url, pattern="*")
        fake_dns["hooks.example.test"] = ["127.0.0.1"]  # then rebound to this machine

        event_id = await env.emit(env.admin.id, "task.created")
        await env.wait_dispatched(event_id)
        [delivery] = await env.deliveries(destination["id"])
        probe = await env.client.post(
            f"/api/v1/destinations/{destination['id']}/test", headers=env.admin.headers
        )

    assert hook.connections == 0
    assert delivery["status"] == "dead"
    assert all("loopback" in a["error"] for a in delivery["attempt_log"])
    assert probe.json()["success"] is False
    assert "loopback" in probe.json()["error"]
