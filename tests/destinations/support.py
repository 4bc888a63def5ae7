"""An app with a real worker and dispatcher, events written as producers write them."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from taskgate.db.session import Database
from taskgate.destinations.dispatcher import Dispatcher
from taskgate.destinations.jobs import DELIVERY_KIND, DELIVERY_SEND
from taskgate.events.outbox import record_event
from taskgate.identity.user_service import ensure_first_admin
from taskgate.models import Delivery, DispatchCursor, Event
from taskgate.runtime.worker import Worker
from tests.conftest import AppFactory
from tests.destinations.receiver import DEADLINE_SECONDS
from tests.support.clients import ADMIN_PASSWORD, User, login
from tests.support.waiting import eventually

FAST_DELIVERY = {
    "base_backoff_seconds": 0.05,
    "max_backoff_seconds": 0.2,
    "request_timeout_seconds": 5.0,
}


@dataclass
class Delivering:
    app: FastAPI
    client: httpx.AsyncClient
    admin: User

    @property
    def db(self) -> Database:
        db: Database = self.app.state.db
        return db

    async def emit(self, owner: uuid.UUID | None, type: str, **fields: Any) -> int:
        """Write one event in its own committed transaction, as a producer does."""
        async with self.db.transaction() as session:
            event = await record_event(session, type, owner_id=owner, **fields)
        return event.id

    async def dispatched(self, event_id: int) -> bool:
        """Every event up to `event_id` was scanned and every delivery has settled."""
        async with self.db.transaction(write=False) as session:
            cursor = await session.scalar(select(DispatchCursor.last_event_id))
            pending = await session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.status == "pending")
            )
        return cursor is not None and cursor >= event_id and pending == 0

    async def wait_dispatched(self, event_id: int) -> None:
        await eventually(lambda: self.dispatched(event_id), timeout=DEADLINE_SECONDS)

    async def deliveries(self, destination_id: str) -> list[dict[str, Any]]:
        """The destination's delivery log, oldest first."""
        response = await self.client.get(
            f"/api/v1/destinations/{destination_id}/deliveries",
            params={"ordering": "created_at", "limit": 100},
            headers=self.admin.headers,
        )
        assert response.status_code == 200, response.text
        results: list[dict[str, Any]] = response.json()["results"]
        return results

    async def events_of_type(self, type: str) -> list[Event]:
        async with self.db.transaction(write=False) as session:
            return list(await session.scalars(select(Event).where(Event.type == type)))


@contextlib.asynccontextmanager
async def delivering_app(app_factory: AppFactory, **overrides: Any) -> AsyncIterator[Delivering]:
    """The API with an in-process worker (delivery jobs only) and the dispatcher."""
    delivery = {**FAST_DELIVERY, **overrides.pop("delivery", {})}
    worker = Worker(kinds={DELIVERY_KIND: DELIVERY_SEND}, concurrency=4, grace_seconds=1.0)
    dispatcher = Dispatcher(poll_seconds=0.2)
    async with app_factory(
        components=[worker, dispatcher],
        delivery=delivery,
        worker={"poll_seconds": 0.05, **overrides.pop("worker", {})},
        **overrides,
    ) as (app, client):
        async with app.state.db.transaction() as session:
            await ensure_first_admin(session, ADMIN_PASSWORD)
        admin = await login(client, "admin", ADMIN_PASSWORD)
        yield Delivering(app, client, admin)
