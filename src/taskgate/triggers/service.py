"""Ingesting events (the API, inbound webhooks) and starting the workflows they trigger.

A ``dedupe_key`` is unique per owner (a unique index on the events table): a repeated key
returns the first event and starts nothing. The check is exact under concurrency: the
insert runs in a savepoint, and a unique violation means another request won the race.
The event and the executions it starts are written in one transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.audit.service import audit
from taskgate.auth.principal import Principal
from taskgate.clock import isoformat
from taskgate.db.session import signal_after_commit
from taskgate.destinations.matching import filter_matches, pattern_matches
from taskgate.errors import ValidationFailed
from taskgate.events.outbox import EVENTS_COMMITTED
from taskgate.governance.access import authorize
from taskgate.http.context import current_trace_id
from taskgate.http.pagination import Page, PageParams, page_of
from taskgate.models import Event, WebhookSource, Workflow, WorkflowExecution
from taskgate.triggers import repository as repo
from taskgate.triggers.schemas import EventFilters, EventOut
from taskgate.workflows import repository as workflows_repo
from taskgate.workflows.executions.service import create_execution

# Names taskgate itself announces; a caller may not forge them.
RESERVED_FAMILIES = frozenset(
    {
        "task",
        "job",
        "run",
        "session",
        "execution",
        "step",
        "workflow",
        "approval",
        "schedule",
        "destination",
        "delivery",
        "queue",
        "verification",
    }
)


@dataclass
class Ingested:
    event: Event
    duplicate: bool
    executions: list[WorkflowExecution] = field(default_factory=list)


def check_event_type(event_type: str) -> None:
    if event_type.split(".", 1)[0].lower() in RESERVED_FAMILIES:
        raise ValidationFailed.field(
            "type", f"{event_type.split('.', 1)[0]}.* events are taskgate's own; choose another"
        )


async def list_events(
    session: AsyncSession, principal: Principal, filters: EventFilters, page: PageParams
) -> Page[EventOut]:
    """The events of the request's project, everyone's."""
    listing = repo.events_listing(authorize(principal, "event:read"), filters)
    return await page_of(session, listing, page, event_out)


def event_out(event: Event) -> EventOut:
    return EventOut(
        id=event.id,
        type=event.type,
        created_at=event.created_at,
        task_id=event.task_id,
        run_id=event.run_id,
        job_id=event.job_id,
        execution_id=event.execution_id,
        workflow_id=event.workflow_id,
        session_id=event.session_id,
        dedupe_key=event.dedupe_key,
        payload=event.payload if isinstance(event.payload, dict) else {"value": event.payload},
    )


async def submit_event(
    session: AsyncSession,
    principal: Principal,
    *,
    type: str,
    payload: dict[str, Any],
    dedupe_key: str | None,
) -> Ingested:
    """``POST /events``: the caller's event in the request's project, which may start the
    project's event-triggered workflows (whoever made them: the caller may run any)."""
    check_event_type(type)
    project_id = authorize(principal, "event:create")
    ingested = await ingest_event(
        session,
        principal.user_id,
        project_id,
        type=type,
        payload=payload,
        dedupe_key=dedupe_key,
    )
    if not ingested.duplicate:
        await audit(
            session,
            "event.create",
            principal,
            resource_type="event",
            resource_id=str(ingested.event.id),
            detail={"type": type, "executions": len(ingested.executions)},
        )
    return ingested


async def ingest_event(
    session: AsyncSession,
    owner_id: uuid.UUID,
    project_id: uuid.UUID,
    *,
    type: str,
    payload: Any,
    dedupe_key: str | None = None,
    source: WebhookSource | None = None,
) -> Ingested:
    if dedupe_key is not None:
        existing = await repo.event_by_dedupe_key(session, owner_id, dedupe_key)
        if existing is not None:
            return Ingested(existing, duplicate=True)
    event = Event(
        type=type,
        owner_id=owner_id,
        project_id=project_id,
        payload=payload,
        dedupe_key=dedupe_key,
        trace_id=current_trace_id(),
    )
    try:
        async with session.begin_nested():
            session.add(event)
            await session.flush()
    except IntegrityError:
        if dedupe_key is None:
            raise
        existing = await repo.event_by_dedupe_key(session, owner_id, dedupe_key)
        if existing is None:
            raise
        return Ingested(existing, duplicate=True)
    signal_after_commit(session, EVENTS_COMMITTED, event.id)
    executions = await _start_matching(session, event, source)
    return Ingested(event, duplicate=False, executions=executions)


def event_snapshot(event: Event, source: WebhookSource | None) -> dict[str, Any]:
    """What a triggered execution's templates see as ``event``."""
    return {
        "id": event.id,
        "type": event.type,
        "source": source.slug if source else "api",
        "payload": event.payload,
        "dedupe_key": event.dedupe_key,
        "created_at": isoformat(event.created_at),
    }


def _wants(workflow: Workflow, document: dict[str, Any], source: WebhookSource | None) -> bool:
    config = workflow.trigger_config or {}
    if workflow.trigger_type == "webhook":
        wanted = config.get("source")
        if source is None or wanted not in (None, source.slug, str(source.id)):
            return False
    pattern = config.get("event_type")
    if isinstance(pattern, str) and not pattern_matches(pattern, document["type"]):
        return False
    event_filter = config.get("filter")
    return filter_matches(event_filter if isinstance(event_filter, dict) else None, document)


async def _start_matching(
    session: AsyncSession, event: Event, source: WebhookSource | None
) -> list[WorkflowExecution]:
    if event.project_id is None:
        return []
    trigger_types = ["event", "webhook"] if source is not None else ["event"]
    workflows = await workflows_repo.triggered_workflows(session, event.project_id, trigger_types)
    if not workflows:
        return []
    snapshot = event_snapshot(event, source)
    document = {key: snapshot[key] for key in ("id", "type", "source", "payload")}
    payload = event.payload if isinstance(event.payload, dict) else {"payload": event.payload}
    started = []
    for workflow in workflows:
        if _wants(workflow, document, source):
            started.append(
                await create_execution(
                    session,
                    workflow,
                    input=payload,
                    trigger=workflow.trigger_type,
                    event=snapshot,
                    trigger_event_id=event.id,
                )
            )
    return started
