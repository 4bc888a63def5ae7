"""Which events reach which destination: patterns, filters, owners, transactions."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest

from taskgate.db.engine import create_engine
from taskgate.db.session import Database
from taskgate.destinations.dispatcher import Dispatcher
from taskgate.events.outbox import record_event
from taskgate.settings import Settings
from tests.conftest import AppFactory
from tests.destinations.receiver import Receiver, receiver
from tests.destinations.support import delivering_app
from tests.destinations.test_destinations_api import create_destination, webhook_body
from tests.destinations.test_subscriptions_api import subscribe
from tests.support.clients import create_user


def types_by_path(hook: Receiver) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = defaultdict(list)
    for request in hook.requests:
        seen[request.path].append(request.json()["type"])
    return dict(seen)


async def test_patterns_and_filters_pick_the_events(app_factory: AppFactory) -> None:
    async with delivering_app(app_factory) as env, receiver() as hook:
        one, two = uuid.uuid4(), uuid.uuid4()
        for path, pattern, event_filter in [
            ("/exact", "task.completed", None),
            ("/failures", "task.*", {"payload": {"status": ["FAILED", "TIMEOUT"]}}),
            ("/one-task", "*", {"task_id": str(one)}),
            ("/paused", "*", None),
        ]:
            destination = await create_destination(
                env.client, env.admin, webhook_body(hook.url(path), name=path)
            )
            extra = {"filter": event_filter} if event_filter else {}
            created = await subscribe(env.client, env.admin, destination["id"], pattern, **extra)
            if path == "/paused":
                await env.client.patch(
                    f"/api/v1/subscriptions/{created['id']}",
                    json={"is_active": False},
                    headers=env.admin.headers,
                )

        owner = env.admin.id
        await env.emit(owner, "task.created", task_id=one, payload={"status": "QUEUED"})
        await env.emit(owner, "task.completed", task_id=two, payload={"status": "COMPLETED"})
        await env.emit(owner, "task.failed", task_id=two, payload={"status": "FAILED"})
        await env.emit(owner, "task.output.delta", task_id=two, payload={"status": "FAILED"})
        await env.emit(owner, "taskforce.failed", payload={"status": "FAILED"})
        await env.emit(owner, "job.completed", task_id=one, payload={"exit_code": 0})
        last = await env.emit(owner, "task.timeout", task_id=two, payload={"status": "TIMEOUT"})
        await env.wait_dispatched(last)

    assert types_by_path(hook) == {
        "/exact": ["task.completed"],
        "/failures": ["task.failed", "task.output.delta", "task.timeout"],
        "/one-task": ["task.created", "job.completed"],
    }


async def test_other_users_events_are_never_delivered_to_you(app_factory: AppFactory) -> None:
    async with delivering_app(app_factory) as env, receiver() as hook:
        bob = await create_user(env.client, env.admin, "bob")
        mine = await create_destination(env.client, env.admin, webhook_body(hook.url("/admin")))
        await subscribe(env.client, env.admin, mine["id"], "*")
        theirs = await create_destination(env.client, bob, webhook_body(hook.url("/bob")))
        await subscribe(env.client, bob, theirs["id"], "task.*")

        await env.emit(bob.id, "task.created", payload={"query": "bob's secret plan"})
        await env.emit(None, "task.created", payload={"query": "a system event"})
        last = await env.emit(env.admin.id, "task.completed")
        await env.wait_dispatched(last)

    assert types_by_path(hook) == {"/bob": ["task.created"], "/admin": ["task.completed"]}
    [to_bob] = [r for r in hook.requests if r.path == "/bob"]
    assert to_bob.json()["payload"] == {"query": "bob's secret plan"}


async def test_a_rolled_back_event_is_never_delivered(app_factory: AppFactory) -> None:
    # A short lookback: on PostgreSQL the rolled-back id leaves a gap the dispatcher stops
    # waiting for after that long, so the test can see it settle.
    overrides = {"delivery": {"dispatch_lookback_seconds": 0.5}}
    async with delivering_app(app_factory, **overrides) as env, receiver() as hook:
        destination = await create_destination(env.client, env.admin, webhook_body(hook.url()))
        await subscribe(env.client, env.admin, destination["id"], "*")

        async def failing_producer() -> None:
            async with env.db.transaction() as session:
                await record_event(session, "task.failed", owner_id=env.admin.id)
                raise RuntimeError("the producer fails after writing its event")

        with pytest.raises(RuntimeError):
            await failing_producer()
        last = await env.emit(env.admin.id, "task.completed")
        await env.wait_dispatched(last)

    assert [r.json()["type"] for r in hook.requests] == ["task.completed"]
    assert [r.json()["id"] for r in hook.requests] == [last]


async def test_an_event_committed_after_a_later_one_is_still_delivered(
    app_factory: AppFactory,
) -> None:
    """PostgreSQL hands out ids at insert and shows rows at commit: id N can appear after
    N+1 was dispatched. The dispatcher looks for such gaps again until they fill."""
    async with delivering_app(app_factory) as env, receiver() as hook:
        if env.db.dialect != "postgresql":
            pytest.skip("SQLite runs one writer at a time: ids commit in order")
        destination = await create_destination(env.client, env.admin, webhook_body(hook.url()))
        await subscribe(env.client, env.admin, destination["id"], "*")
        written = asyncio.Event()
        release = asyncio.Event()

        async def slow_producer() -> int:
            async with env.db.transaction() as session:
                event = await record_event(session, "task.started", owner_id=env.admin.id)
                written.set()
                await release.wait()
            return event.id

        slow = asyncio.create_task(slow_producer())
        await written.wait()
        fast = await env.emit(env.admin.id, "task.completed")
        await hook.wait_for(1)
        release.set()
        early = await slow
        await hook.wait_for(2)
        await env.wait_dispatched(fast)

    assert early < fast
    assert [r.json()["id"] for r in hook.requests] == [fast, early]


async def test_concurrent_dispatchers_deliver_each_event_once(app_factory: AppFactory) -> None:
    """A second process's dispatcher (its own engine and pool) scanning the same log."""
    async with delivering_app(app_factory) as env, receiver() as hook:
        destination = await create_destination(env.client, env.admin, webhook_body(hook.url()))
        await subscribe(env.client, env.admin, destination["id"], "*")
        settings: Settings = env.app.state.settings
        other_db = Database(create_engine(settings))
        other = Dispatcher(poll_seconds=0.05)
        await other.open(other_db, settings)
        try:
            ids = [await env.emit(env.admin.id, f"task.step{n}") for n in range(30)]
            await hook.wait_for(len(ids))
            await env.wait_dispatched(ids[-1])
        finally:
            await other.stop()
            await other_db.dispose()

    assert [r.json()["id"] for r in hook.requests] == ids


async def test_events_from_before_any_subscription_are_not_delivered(
    app_factory: AppFactory,
) -> None:
    async with delivering_app(app_factory) as env, receiver() as hook:
        unheard = await env.emit(env.admin.id, "task.created")
        await env.wait_dispatched(unheard)
        destination = await create_destination(env.client, env.admin, webhook_body(hook.url()))
        await subscribe(env.client, env.admin, destination["id"], "*")
        heard = await env.emit(env.admin.id, "task.completed")
        await hook.wait_for(1)
        await env.wait_dispatched(heard)

    assert [r.json()["id"] for r in hook.requests] == [heard]
