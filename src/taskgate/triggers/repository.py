"""Queries for ingested events, webhook sources and webhook receipts."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, case, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.http.pagination import Listing
from taskgate.models import Event, Project, WebhookReceipt, WebhookSource
from taskgate.triggers.schemas import EventFilters


async def event_by_dedupe_key(
    session: AsyncSession, owner_id: uuid.UUID, dedupe_key: str
) -> Event | None:
    stmt = select(Event).where(Event.owner_id == owner_id, Event.dedupe_key == dedupe_key)
    return (await session.scalars(stmt)).first()


def events_listing(project_id: uuid.UUID, filters: EventFilters) -> Listing[Event]:
    """The events of a project, everyone's, of these types (exact or ``prefix.*``)."""
    stmt = select(Event).where(Event.project_id == project_id)
    types = filters.types
    exact = [t for t in types if not t.endswith(".*") and t != "*"]
    prefixes = [t[:-1] for t in types if t.endswith(".*")]
    if not ("*" in types or not types):
        conditions: list[ColumnElement[bool]] = []
        if exact:
            conditions.append(Event.type.in_(exact))
        conditions += [Event.type.startswith(prefix, autoescape=True) for prefix in prefixes]
        stmt = stmt.where(or_(*conditions))
    return Listing(stmt, {"id": Event.id}, Event.id)


def sources_listing(project_id: uuid.UUID) -> Listing[WebhookSource]:
    """The webhook sources of a project, everyone's."""
    stmt = select(WebhookSource).where(WebhookSource.project_id == project_id)
    return Listing(stmt, {"created_at": WebhookSource.created_at}, WebhookSource.id)


async def source_of(session: AsyncSession, source_id: uuid.UUID) -> WebhookSource | None:
    """The source, wherever it is: the caller authorizes."""
    return await session.get(WebhookSource, source_id)


async def project_disabled(session: AsyncSession, project_id: uuid.UUID) -> bool:
    status = await session.scalar(select(Project.status).where(Project.id == project_id))
    return status == "disabled"


async def inbound_candidates(session: AsyncSession, ref: str, *, limit: int) -> list[WebhookSource]:
    """Any owner's enabled sources that ``ref`` names, by id or by slug: the one with that
    id first, then those with that slug, oldest first, at most ``limit``."""
    try:
        source_id: uuid.UUID | None = uuid.UUID(ref)
    except ValueError:
        source_id = None
    named: ColumnElement[bool] = WebhookSource.slug == ref
    if source_id is not None:
        named = or_(WebhookSource.id == source_id, named)
    stmt = (
        select(WebhookSource)
        .where(named, WebhookSource.enabled.is_(True))
        .order_by(
            case((WebhookSource.id == source_id, 0), else_=1),
            WebhookSource.created_at,
            WebhookSource.id,
        )
        .limit(limit)
    )
    return list((await session.scalars(stmt)).all())


async def slug_exists(session: AsyncSession, project_id: uuid.UUID, slug: str) -> bool:
    """Whether the project already has a source with this slug (slugs are unique per project)."""
    stmt = (
        select(WebhookSource.id)
        .where(WebhookSource.project_id == project_id, WebhookSource.slug == slug)
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
