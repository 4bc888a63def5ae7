"""Outbound routes: destinations (with their test and delivery log) and subscriptions."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi import status as http

from taskgate.destinations import service, subscription_service
from taskgate.destinations.probe import probe_destination
from taskgate.destinations.schemas import (
    DeliveryFilters,
    DeliveryOut,
    DeliveryStatus,
    DestinationCreate,
    DestinationFilters,
    DestinationOut,
    DestinationTestResult,
    DestinationUpdate,
    SubscriptionCreate,
    SubscriptionFilters,
    SubscriptionOut,
    SubscriptionUpdate,
)
from taskgate.http.app_state import AppSettings
from taskgate.http.auth import (
    Db,
    DestinationsRead,
    DestinationsWrite,
    Session,
    SubscriptionsRead,
    SubscriptionsWrite,
)
from taskgate.http.json_body import JsonRoute
from taskgate.http.pagination import Page, PageParams, page_params
from taskgate.openapi import errors

router = APIRouter(prefix="/api/v1", route_class=JsonRoute)

CreatedPage = Annotated[PageParams, Depends(page_params(["created_at", "-created_at"]))]
NewestFirst = Annotated[PageParams, Depends(page_params(["-created_at", "created_at"]))]


@router.get("/destinations", tags=["destinations"], responses=errors(400, 401, 403))
async def list_destinations(
    session: Session,
    principal: DestinationsRead,
    page: CreatedPage,
    is_active: bool | None = None,
) -> Page[DestinationOut]:
    filters = DestinationFilters(is_active=is_active)
    return await service.list_destinations(session, principal, filters, page)


@router.post(
    "/destinations",
    tags=["destinations"],
    status_code=http.HTTP_201_CREATED,
    responses=errors(400, 401, 403, 409),
)
async def create_destination(
    body: DestinationCreate,
    session: Session,
    principal: DestinationsWrite,
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
    destination_id: uuid.UUID, session: Session, principal: DestinationsRead
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
    principal: DestinationsWrite,
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
    destination_id: uuid.UUID, session: Session, principal: DestinationsWrite
) -> None:
    await service.delete_destination(session, principal, destination_id)


@router.post(
    "/destinations/{destination_id}/test",
    tags=["destinations"],
    responses=errors(401, 403, 404, 409),
    summary="Send a test event now",
)
async def test_destination(
    destination_id: uuid.UUID, db: Db, principal: DestinationsWrite, settings: AppSettings
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
    principal: DestinationsRead,
    page: NewestFirst,
    status: DeliveryStatus | None = None,
    event_type: str | None = None,
) -> Page[DeliveryOut]:
    filters = DeliveryFilters(status=status, event_type=event_type)
    return await service.list_deliveries(session, principal, destination_id, filters, page)


@router.get("/subscriptions", tags=["subscriptions"], responses=errors(400, 401, 403))
async def list_subscriptions(
    session: Session,
    principal: SubscriptionsRead,
    page: CreatedPage,
    destination_id: uuid.UUID | None = None,
) -> Page[SubscriptionOut]:
    filters = SubscriptionFilters(destination_id=destination_id)
    return await subscription_service.list_subscriptions(session, principal, filters, page)


@router.post(
    "/subscriptions",
    tags=["subscriptions"],
    status_code=http.HTTP_201_CREATED,
    responses=errors(400, 401, 403, 404, 409),
)
async def create_subscription(
    body: SubscriptionCreate, session: Session, principal: SubscriptionsWrite, response: Response
) -> SubscriptionOut:
    subscription = await subscription_service.create_subscription(session, principal, body)
    response.headers["Location"] = f"/api/v1/subscriptions/{subscription.id}"
    return SubscriptionOut.model_validate(subscription)


@router.get(
    "/subscriptions/{subscription_id}", tags=["subscriptions"], responses=errors(401, 403, 404)
)
async def get_subscription(
    subscription_id: uuid.UUID, session: Session, principal: SubscriptionsRead
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
    principal: SubscriptionsWrite,
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
    subscription_id: uuid.UUID, session: Session, principal: SubscriptionsWrite
) -> None:
    await subscription_service.delete_subscription(session, principal, subscription_id)
