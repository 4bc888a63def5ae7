"""Subscription use cases: route a project's events to one of the project's destinations,
and list those routes."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.audit.service import audit
from taskgate.auth.principal import Principal
from taskgate.destinations import repository as repo
from taskgate.destinations.matching import filter_problems, pattern_problem
from taskgate.destinations.schemas import (
    SubscriptionCreate,
    SubscriptionFilters,
    SubscriptionOut,
    SubscriptionUpdate,
)
from taskgate.destinations.service import refuse_nulls, refuse_problems
from taskgate.errors import NotFound
from taskgate.governance.access import authorize
from taskgate.http.pagination import Page, PageParams, page_of
from taskgate.ids import new_id
from taskgate.models import Subscription


def _validate(event_pattern: str | None, event_filter: dict[str, Any] | None) -> None:
    problems: list[tuple[str, str]] = []
    if event_pattern is not None and (problem := pattern_problem(event_pattern)):
        problems.append(("event_pattern", problem))
    if event_filter:
        problems += filter_problems(event_filter)
    refuse_problems("subscription", problems)


async def list_subscriptions(
    session: AsyncSession, principal: Principal, filters: SubscriptionFilters, page: PageParams
) -> Page[SubscriptionOut]:
    """The subscriptions of the request's project, whoever made them."""
    listing = repo.subscriptions_listing(authorize(principal, "subscription:read"), filters)
    return await page_of(session, listing, page, SubscriptionOut.model_validate)


async def create_subscription(
    session: AsyncSession, principal: Principal, body: SubscriptionCreate
) -> Subscription:
    project_id = authorize(principal, "subscription:create")
    _validate(body.event_pattern, body.filter)
    # A destination of another project is a 404, seen or not: a subscription routes its
    # project's events to one of its project's destinations, never elsewhere.
    destination = await repo.destination_for(session, body.destination_id)
    if destination is None or destination.project_id != project_id:
        raise NotFound("No such destination.")
    subscription = Subscription(
        id=new_id(),
        owner_id=principal.user_id,
        project_id=project_id,
        destination_id=destination.id,
        event_pattern=body.event_pattern,
        filter=body.filter or None,
        is_active=body.is_active,
    )
    session.add(subscription)
    await session.flush()
    await audit(
        session,
        "subscription.create",
        principal,
        resource_type="subscription",
        resource_id=subscription.id,
        detail={
            "destination_id": str(destination.id),
            "event_pattern": subscription.event_pattern,
            "filter": subscription.filter,
        },
    )
    return subscription


async def get_subscription(
    session: AsyncSession,
    principal: Principal,
    subscription_id: uuid.UUID,
    permission: str = "subscription:read",
) -> Subscription:
    """The subscription, if ``principal`` holds ``permission`` in its project; 404 when
    missing or in a project it does not see."""
    subscription = await repo.subscription_for(session, subscription_id)
    if subscription is None:
        raise NotFound("No such subscription.")
    authorize(
        principal,
        permission,
        project_id=subscription.project_id,
        owner_id=subscription.owner_id,
        resource_id=subscription.id,
    )
    return subscription


async def update_subscription(
    session: AsyncSession,
    principal: Principal,
    subscription_id: uuid.UUID,
    body: SubscriptionUpdate,
) -> Subscription:
    subscription = await get_subscription(
        session, principal, subscription_id, "subscription:update"
    )
    sent = body.model_fields_set
    refuse_nulls(body, ("event_pattern", "is_active"))
    _validate(body.event_pattern, body.filter)
    if body.event_pattern is not None:
        subscription.event_pattern = body.event_pattern
    if "filter" in sent:
        subscription.filter = body.filter or None
    if body.is_active is not None:
        subscription.is_active = body.is_active
    await session.flush()
    await audit(
        session,
        "subscription.update",
        principal,
        resource_type="subscription",
        resource_id=subscription.id,
        detail={"changed_fields": sorted(sent)},
    )
    return subscription


async def delete_subscription(
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID
) -> None:
    subscription = await get_subscription(
        session, principal, subscription_id, "subscription:delete"
    )
    await session.delete(subscription)
    await session.flush()
    await audit(
        session,
        "subscription.delete",
        principal,
        resource_type="subscription",
        resource_id=subscription_id,
        detail={"destination_id": str(subscription.destination_id)},
    )
