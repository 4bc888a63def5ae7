"""Routes: events (ingest and list), inbound webhooks, webhook sources."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from taskgate.errors import PayloadTooLarge
from taskgate.http.auth import EventsRead, EventsWrite, Session, WebhooksRead, WebhooksWrite
from taskgate.http.context import current_trace_id
from taskgate.http.json_body import JsonRoute
from taskgate.http.pagination import Page, PageParams, page_params
from taskgate.openapi import errors
from taskgate.triggers import inbound, sources
from taskgate.triggers import service as events_service
from taskgate.triggers.schemas import (
    EventAccepted,
    EventCreate,
    EventFilters,
    EventOut,
    WebhookAccepted,
    WebhookSourceCreate,
    WebhookSourceCreated,
    WebhookSourceOut,
    WebhookSourceUpdate,
)
from taskgate.workflows.definitions.endpoints import Box

router = APIRouter(prefix="/api/v1", route_class=JsonRoute)
WEBHOOK_MAX_BYTES = 1024 * 1024
EventPage = Annotated[PageParams, Depends(page_params(["-id", "id"], default="-id"))]
SourcePage = Annotated[PageParams, Depends(page_params(["created_at", "-created_at"]))]


@router.post(
    "/events",
    tags=["events"],
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "A repeated dedupe_key: the first event"},
        **errors(400, 401, 403, 409),
    },
)
async def create_event(
    body: EventCreate, session: Session, principal: EventsWrite, response: Response
) -> EventAccepted:
    ingested = await events_service.submit_event(
        session, principal, type=body.type, payload=body.payload, dedupe_key=body.dedupe_key
    )
    if ingested.duplicate:
        response.status_code = status.HTTP_200_OK
    return EventAccepted(
        event_id=ingested.event.id,
        trace_id=current_trace_id(),
        duplicate=ingested.duplicate,
        execution_ids=[e.id for e in ingested.executions],
    )


@router.get("/events", tags=["events"], responses=errors(400, 401, 403, 404))
async def list_events(
    session: Session,
    principal: EventsRead,
    page: EventPage,
    type: Annotated[
        list[str] | None, Query(description="Exact types or prefixes such as order.*")
    ] = None,
) -> Page[EventOut]:
    """The events of the request's project, newest first."""
    types = [t.strip() for item in type or [] for t in item.split(",") if t.strip()]
    return await events_service.list_events(session, principal, EventFilters(types), page)


async def _raw_body(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > WEBHOOK_MAX_BYTES:
            raise PayloadTooLarge(f"Webhook bodies are limited to {WEBHOOK_MAX_BYTES} bytes.")
    return bytes(body)


@router.post(
    "/webhooks/{source}",
    tags=["webhooks"],
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"description": "A replayed webhook-id: the first event, nothing new"},
        **errors(401, 409, 413),
    },
)
async def receive_webhook(
    source: str, request: Request, session: Session, box: Box, response: Response
) -> WebhookAccepted:
    """Signed by the source's secret instead of a token; ``source`` is the source's id (its
    ``url``) or its slug, which reaches the source of that slug whose secret signed the
    request. An unknown source is a 401, as a bad signature is. A ``sha256=`` signature seen
    in the last 5 minutes is a replay: 409."""
    body = await _raw_body(request)
    received = await inbound.receive(session, source, request.headers, body, box)
    ingested = received.ingested
    if received.replay:
        response.status_code = status.HTTP_200_OK
        message = "Duplicate delivery (this webhook-id was already received); nothing started."
    else:
        message = "Event accepted for processing"
    return WebhookAccepted(
        event_id=ingested.event.id,
        trace_id=current_trace_id(),
        message=message,
        duplicate=received.replay,
        execution_ids=[e.id for e in ingested.executions],
    )


@router.get("/webhook-sources", tags=["webhooks"], responses=errors(400, 401, 403))
async def list_sources(
    session: Session, principal: WebhooksRead, page: SourcePage
) -> Page[WebhookSourceOut]:
    return await sources.list_sources(session, principal, page)


@router.post(
    "/webhook-sources",
    tags=["webhooks"],
    status_code=status.HTTP_201_CREATED,
    responses=errors(400, 401, 403, 409),
)
async def create_source(
    body: WebhookSourceCreate, session: Session, principal: WebhooksWrite, box: Box
) -> WebhookSourceCreated:
    """The secret is in this response only; afterwards it is write-only."""
    source, secret = await sources.create_source(session, principal, body, box)
    return sources.source_created(source, secret)


@router.get("/webhook-sources/{source_id}", tags=["webhooks"], responses=errors(401, 403, 404))
async def get_source(
    source_id: uuid.UUID, session: Session, principal: WebhooksRead
) -> WebhookSourceOut:
    return sources.source_out(await sources.get_source(session, principal, source_id))


@router.patch(
    "/webhook-sources/{source_id}", tags=["webhooks"], responses=errors(400, 401, 403, 404, 409)
)
async def update_source(
    source_id: uuid.UUID,
    body: WebhookSourceUpdate,
    session: Session,
    principal: WebhooksWrite,
    box: Box,
) -> WebhookSourceOut:
    source = await sources.update_source(session, principal, source_id, body, box)
    await session.flush()
    return sources.source_out(source)


@router.delete(
    "/webhook-sources/{source_id}",
    tags=["webhooks"],
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(401, 403, 404, 409),
)
async def delete_source(
    source_id: uuid.UUID, session: Session, principal: WebhooksWrite
) -> Response:
    await sources.delete_source(session, principal, source_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
