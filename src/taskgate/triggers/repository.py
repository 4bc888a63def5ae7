"""Queries for ingested events, webhook sources and webhook receipts."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, Select, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.models import Event, WebhookReceipt, WebhookSource


async def event_by_dedupe_key(
    session: AsyncSession, owner_id: uuid.UUID, dedupe_key: str
) -> Event | None:
    stmt = select(Event).where(Event.owner_id == owner_id, Event.dedupe_key == dedupe_key)
    return (await session.scalars(stmt)).first()


def events_query(
    owner_id: uuid.UUID, project_id: uuid.UUID | None, *, types: list[str]
) -> Select[tuple[Event]]:
    stmt = select(Event).where(Event.project_id == project_id, Event.owner_id == owner_id)
    exact = [t for t in types if not t.endswith(".*") and t != "*"]
    prefixes = [t[:-1] for t in types if t.endswith(".*")]
    if "*" in types or not types:
        return stmt
    conditions: list[ColumnElement[bool]] = []
    if exact:
        conditions.append(Event.type.in_(exact))
    conditions += [Event.type.startswith(prefix, autoescape=True) for prefix in prefixes]
    return stmt.where(or_(*conditions))


def sources_query(
    owner_id: uuid.UUID, project_id: uuid.UUID | None
) -> Select[tuple[WebhookSource]]:
    return select(WebhookSource).where(
        WebhookSource.project_id == project_id, WebhookSource.owner_id == owner_id
    )


async def source_of(
    session: AsyncSession, owner_id: uuid.UUID, source_id: uuid.UUID
) -> WebhookSource | None:
    stmt = select(WebhookSource).where(
        WebhookSource.id == source_id, WebhookSource.owner_id == owner_id
    )
    return (await session.scalars(stmt)).first()


async def source_by_id(session: AsyncSession, source_id: uuid.UUID) -> WebhookSource | None:
    """Any owner's source: the inbound URL is its only credential besides the signature."""
    return await session.get(WebhookSource, source_id)


async def slug_exists(session: AsyncSession, owner_id: uuid.UUID, slug: str) -> bool:
    """Whether the owner already has a source with this slug (slugs are unique per owner)."""
    stmt = (
        select(WebhookSource.id)
        .where(WebhookSource.owner_id == owner_id, WebhookSource.slug == slug)
        .limit(1)
    )
    return (await session.scalar(stmt)) is not None


async def receipt_of(
    session: AsyncSession, source_id: uuid.UUID, message_id: str
) -> WebhookReceipt | None:
    stmt = select(WebhookReceipt).where(
        WebhookReceipt.source_id == source_id, WebhookReceipt.message_id == message_id
    )
    return (await session.scalars(stmt.execution_options(populate_existing=True))).first()


async def forget_receipts(session: AsyncSession, source_id: uuid.UUID, before: datetime) -> None:
    await session.execute(
        delete(WebhookReceipt).where(
            WebhookReceipt.source_id == source_id, WebhookReceipt.received_at < before
        )
    )


async def forget_receipt(
    session: AsyncSession, source_id: uuid.UUID, message_id: str, before: datetime
) -> None:
    await session.execute(
        delete(WebhookReceipt).where(
            WebhookReceipt.source_id == source_id,
            WebhookReceipt.message_id == message_id,
            WebhookReceipt.received_at < before,
        )
    )


async def forget_old_receipts(session: AsyncSession, before: datetime) -> int:
    """Every source's receipts past ``before``, for the sources that stopped receiving."""
    result = await session.execute(
        delete(WebhookReceipt).where(WebhookReceipt.received_at < before)
    )
    return int(getattr(result, "rowcount", 0) or 0)
