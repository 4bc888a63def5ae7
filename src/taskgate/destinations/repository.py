"""Queries for destinations, subscriptions and deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import false, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.destinations.schemas import DeliveryFilters, DestinationFilters, SubscriptionFilters
from taskgate.http.pagination import Listing
from taskgate.models import (
    Delivery,
    DeliveryAttempt,
    Destination,
    DispatchCursor,
    Event,
    Subscription,
)

CURSOR_ROW = 1
CHUNK = 500


async def destination_for(session: AsyncSession, destination_id: uuid.UUID) -> Destination | None:
    """The destination, wherever it is: the caller authorizes."""
    return await session.get(Destination, destination_id)


def destinations_listing(
    project_id: uuid.UUID, filters: DestinationFilters
) -> Listing[Destination]:
    """The destinations of a project, everyone's."""
    stmt = select(Destination).where(Destination.project_id == project_id)
    if filters.is_active is not None:
        stmt = stmt.where(Destination.is_active == filters.is_active)
    return Listing(stmt, {"created_at": Destination.created_at}, Destination.id)


async def subscription_for(
    session: AsyncSession, subscription_id: uuid.UUID
) -> Subscription | None:
    """The subscription, wherever it is: the caller authorizes."""
    return await session.get(Subscription, subscription_id)


def subscriptions_listing(
    project_id: uuid.UUID, filters: SubscriptionFilters
) -> Listing[Subscription]:
    """The subscriptions of a project, everyone's."""
    stmt = select(Subscription).where(Subscription.project_id == project_id)
    if filters.destination_id is not None:
        stmt = stmt.where(Subscription.destination_id == filters.destination_id)
    return Listing(stmt, {"created_at": Subscription.created_at}, Subscription.id)


def deliveries_listing(destination_id: uuid.UUID, filters: DeliveryFilters) -> Listing[Delivery]:
    stmt = select(Delivery).where(Delivery.destination_id == destination_id)
    if filters.status is not None:
        stmt = stmt.where(Delivery.status == filters.status)
    if filters.event_type is not None:
        stmt = stmt.where(Delivery.event_type == filters.event_type)
    return Listing(stmt, {"created_at": Delivery.created_at}, Delivery.id)


async def attempts_of(
    session: AsyncSession, delivery_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[DeliveryAttempt]]:
    grouped: dict[uuid.UUID, list[DeliveryAttempt]] = {d: [] for d in delivery_ids}
    if not delivery_ids:
        return grouped
    rows = await session.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.delivery_id.in_(delivery_ids))
        .order_by(DeliveryAttempt.delivery_id, DeliveryAttempt.attempt)
    )
    for attempt in rows:
        grouped[attempt.delivery_id].append(attempt)
    return grouped


# The dispatcher's queries.


async def lock_cursor(session: AsyncSession) -> int | None:
    """This transaction's hold on the dispatch cursor, or None if another dispatcher has it.

    PostgreSQL: the row lock (`SKIP LOCKED`: a busy dispatcher is skipped, not waited for).
    SQLite: the write transaction (`BEGIN IMMEDIATE`) already serializes dispatchers.
    """
    dialect = session.bind.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(
        insert(DispatchCursor)
        .values(id=CURSOR_ROW, last_event_id=0)
        .on_conflict_do_nothing(index_elements=["id"])
    )
    stmt = select(DispatchCursor.last_event_id).where(DispatchCursor.id == CURSOR_ROW)
    if dialect == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    result = await session.execute(stmt)
    row = result.first()
    return None if row is None else int(row[0])


async def save_cursor(session: AsyncSession, last_event_id: int) -> None:
    await session.execute(
        update(DispatchCursor)
        .where(DispatchCursor.id == CURSOR_ROW)
        .values(last_event_id=last_event_id)
    )


async def scan_hint(session: AsyncSession) -> tuple[int | None, bool]:
    """The newest committed event id, and whether any subscription could receive an event
    (active, to an active destination), read in one snapshot."""
    subscribed = (
        select(Subscription.id)
        .join(Destination, Destination.id == Subscription.destination_id)
        .where(Subscription.is_active.is_(True), Destination.is_active.is_(True))
        .exists()
    )
    row = (await session.execute(select(func.max(Event.id), subscribed))).one()
    return row[0], bool(row[1])


async def events_after(session: AsyncSession, after_id: int, limit: int) -> list[Event]:
    rows = await session.scalars(
        select(Event).where(Event.id > after_id).order_by(Event.id).limit(limit)
    )
    return list(rows)


async def events_by_ids(session: AsyncSession, ids: Iterable[int]) -> list[Event]:
    wanted = sorted(ids)
    found: list[Event] = []
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start : start + CHUNK]
        rows = await session.scalars(select(Event).where(Event.id.in_(chunk)).order_by(Event.id))
        found.extend(rows)
    return found


async def active_subscriptions(
    session: AsyncSession,
    project_ids: Iterable[uuid.UUID],
    legacy_owner_ids: Iterable[uuid.UUID] = (),
) -> list[Subscription]:
    """Active subscriptions of these projects, everyone's (and of these owners, for events
    written before projects, which carry none), whose destination is active too."""
    projects = list(set(project_ids))
    owners = list(set(legacy_owner_ids))
    if not projects and not owners:
        return []
    routed = or_(
        Subscription.project_id.in_(projects) if projects else false(),
        Subscription.owner_id.in_(owners) if owners else false(),
    )
    rows = await session.scalars(
        select(Subscription)
        .join(Destination, Destination.id == Subscription.destination_id)
        .where(
            routed,
            Subscription.is_active.is_(True),
            Destination.is_active.is_(True),
        )
        .order_by(Subscription.id)
    )
    return list(rows)


async def insert_deliveries(
    session: AsyncSession, rows: list[dict[str, Any]]
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Insert deliveries, skipping (subscription, event) pairs that already have one.

    Returns `(delivery_id, subscription_id)` of the rows actually inserted, in input order.
    """
    dialect = session.bind.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    inserted: dict[uuid.UUID, uuid.UUID] = {}
    # Chunked: one statement's bound parameters stay far below both databases' limits.
    for start in range(0, len(rows), CHUNK):
        stmt = (
            insert(Delivery)
            .values(rows[start : start + CHUNK])
            .on_conflict_do_nothing(index_elements=["subscription_id", "event_id"])
            .returning(Delivery.id, Delivery.subscription_id)
        )
        result = await session.execute(stmt)
        inserted.update({row[0]: row[1] for row in result.all()})
    return [(row["id"], inserted[row["id"]]) for row in rows if row["id"] in inserted]
