"""Outbound routes: destinations (with their test and delivery log) and subscriptions."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi import status as http

from taskgate.destinations import repository as repo
from taskgate.destinations import service, subscription_service
from taskgate.destinations.probe import probe_destination
from taskgate.destinations.schemas import (
    DeliveryAttemptOut,
    DeliveryOut,
    DeliveryStatus,
    DestinationCreate,
    DestinationOut,
    DestinationTestResult,
    DestinationUpdate,
    SubscriptionCreate,
    SubscriptionOut,
    SubscriptionUpdate,
)
from taskgate.http.app_state import AppSettings
from taskgate.http.auth import CurrentPrincipal, Db, Session
from taskgate.http.json_body import JsonRoute
from taskgate.http.pagination import Page, PageParams, page_of, page_params, paginate
from taskgate.models import Delivery, Destination, Subscription
from taskgate.openapi import errors

router = APIRouter(prefix="/api/v1", route_class=JsonRoute)

CreatedPage = Annotated[PageParams, Depends(page_params(["created_at", "-created_at"]))]
NewestFirst = Annotated[PageParams, Depends(page_params(["-created_at", "created_at"]))]


@router.get("/destinations", tags=["destinations"], responses=errors(400, 401, 403))
async def list_destinations(
    session: Session,
    principal: CurrentPrincipal,
    page: CreatedPage,
    is_active: bool | None = None,
) -> Page[DestinationOut]:
    return await page_of(
        session,
        service.destinations_query(principal, is_active=is_active),
        page,
        {"created_at": Destination.created_at},
        Destination.id,
        show=service.destination_out,
    )


@router.post(
    "/destinations",
    tags=["destinations"],
    status_code=http.HTTP_201_CREATED,
    responses=errors(400, 401, 403, 409),
)
async def create_destination(
    body: DestinationCreate,
    session: Session,
    principal: CurrentPrincipal,
    settings: AppSettings,
    response: Response,
) -> DestinationOut:
    destination = await service.create_destination(session, settings, principal, body)
    response.headers["Location"] = f"/api/v1/destinations/{destination.id}"
    return service.destination_out(destination)


@router.get(
    "/destinations/{destination_id}", tags=["destinations"], responses=errors(401, 403, 404)
)
async def get_destination(
    destination_id: uuid.UUID, session: Session, principal: CurrentPrincipal
) -> DestinationOut:
    destination = await service.get_destination(session, principal, destination_id)
    return service.destination_out(destination)


@router.patch(
    "/destinations/{destination_id}",
    tags=["destinations"],
    responses=errors(400, 401, 403, 404, 409),
)
async def update_destination(
    destination_id: uuid.UUID,
    body: DestinationUpdate,
    session: Session,
    principal: CurrentPrincipal,
    settings: AppSettings,
) -> DestinationOut:
    destination = await service.update_destination(
        session, settings, principal, destination_id, body
    )
    return service.destination_out(destination)


@router.delete(
    "/destinations/{destination_id}",
    tags=["destinations"],
    status_code=http.HTTP_204_NO_CONTENT,
    responses=errors(401, 403, 404, 409),
)
async def delete_destination(
    destination_id: uuid.UUID, session: Session, principal: CurrentPrincipal
) -> None:
    await service.delete_destination(session, principal, destination_id)


@router.post(
    "/destinations/{destination_id}/test",
    tags=["destinations"],
    responses=errors(401, 403, 404, 409),
    summary="Send a test event now",
)
async def test_destination(
    destination_id: uuid.UUID, db: Db, principal: CurrentPrincipal, settings: AppSettings
) -> DestinationTestResult:
    return await probe_destination(db, settings, principal, destination_id)


@router.get(
    "/destinations/{destination_id}/deliveries",
    tags=["destinations"],
    responses=errors(400, 401, 403, 404),
    summary="The delivery log, newest first",
)
async def list_deliveries(
    destination_id: uuid.UUID,
    session: Session,
    principal: CurrentPrincipal,
    page: NewestFirst,
    status: DeliveryStatus | None = None,
    event_type: str | None = None,
) -> Page[DeliveryOut]:
    destination = await service.get_destination(session, principal, destination_id)
    rows, next_link, total = await paginate(
        session,
        repo.deliveries_query(destination.id, status=status, event_type=event_type),
        page,
        {"created_at": Delivery.created_at},
        Delivery.id,
    )
    attempts = await repo.attempts_of(session, [r.id for r in rows])
    results = [
        DeliveryOut(
            id=r.id,
            subscription_id=r.subscription_id,
            destination_id=r.destination_id,
            event_id=r.event_id,
            event_type=r.event_type,
            status=r.status,
            attempts=r.attempts,
            next_attempt_at=r.next_attempt_at,
            last_status_code=r.last_status_code,
            last_error=r.last_error,
            created_at=r.created_at,
            updated_at=r.updated_at,
            attempt_log=[DeliveryAttemptOut.model_validate(a) for a in attempts[r.id]],
        )
        for r in rows
    ]
    return Page(results=results, next=next_link, count=total)


@router.get("/subscriptions", tags=["subscriptions"], responses=errors(400, 401, 403))
async def list_subscriptions(
    session: Session,
    principal: CurrentPrincipal,
    page: CreatedPage,
    destination_id: uuid.UUID | None = None,
) -> Page[SubscriptionOut]:
    return await page_of(
        session,
        subscription_service.subscriptions_query(principal, destination_id=destination_id),
        page,
        {"created_at": Subscription.created_at},
        Subscription.id,
        show=SubscriptionOut.model_validate,
    )


@router.post(
    "/subscriptions",
    tags=["subscriptions"],
    status_code=http.HTTP_201_CREATED,
    responses=errors(400, 401, 403, 404, 409),
)
async def create_subscription(
    body: SubscriptionCreate, session: Session, principal: CurrentPrincipal, response: Response
) -> SubscriptionOut:
    subscription = await subscription_service.create_subscription(session, principal, body)
    response.headers["Location"] = f"/api/v1/subscriptions/{subscription.id}"
    return SubscriptionOut.model_validate(subscription)


@router.get(
    "/subscriptions/{subscription_id}", tags=["subscriptions"], responses=errors(401, 403, 404)
)
async def get_subscription(
    subscription_id: uuid.UUID, session: Session, principal: CurrentPrincipal
) -> SubscriptionOut:
    subscription = await subscription_service.get_subscription(session, principal, subscription_id)
    return SubscriptionOut.model_validate(subscription)


@router.patch(
    "/subscriptions/{subscription_id}",
    tags=["subscriptions"],
    responses=errors(400, 401, 403, 404, 409),
)
async def update_subscription(
    subscription_id: uuid.UUID,
    body: SubscriptionUpdate,
    session: Session,
    principal: CurrentPrincipal,
) -> SubscriptionOut:
    subscription = await subscription_service.update_subscription(
        session, principal, subscription_id, body
    )
    return SubscriptionOut.model_validate(subscription)


@router.delete(
    "/subscriptions/{subscription_id}",
    tags=["subscriptions"],
    status_code=http.HTTP_204_NO_CONTENT,
    responses=errors(401, 403, 404, 409),
)
async def delete_subscription(
    subscription_id: uuid.UUID, session: Session, principal: CurrentPrincipal
) -> None:
    await subscription_service.delete_subscription(session, principal, subscription_id)
