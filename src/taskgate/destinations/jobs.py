"""The destinations' job kind, `delivery.send`: one delivery to one destination, retried until
it lands or dies.

Each run reads the delivery, sends it through the process's guarded client (outside any
transaction: a slow endpoint must not hold database locks), then records the attempt and its
consequences in one transaction:

- 2xx: the delivery succeeded; the destination's failure count resets.
- otherwise: the destination's consecutive failures grow (at `disable_after_failures` it is
  disabled and a `destination.disabled` event is written), and the job is retried later with
  exponential backoff and jitter, until `retry_period_seconds` after the delivery was created:
  then it is dead.

Order within a subscription: the dispatcher enqueues a subscription's deliveries under one
concurrency key, in event order, with the delivery id as job id. The queue starts a keyed job
only when no job of its key is running and no earlier-enqueued one is still queued, and a
RetryLater puts the same job (same id) back in the queue: a failing delivery therefore holds
every later delivery of its subscription back until it succeeds, fails or dies, whatever its
`run_after`. (An event whose transaction commits late, after a later event was dispatched,
is delivered after it: the order is the dispatch order.)

Delivery is at least once: a worker that dies after sending but before recording the attempt
leaves the job to be retaken, and the request is sent again with the same `webhook-id` (the
event id), which is what receivers deduplicate on.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.clock import utcnow
from taskgate.destinations.matching import event_document
from taskgate.destinations.sealing import open_secret
from taskgate.destinations.sending import SendOutcome, send
from taskgate.events.outbox import record_event
from taskgate.models import Delivery, DeliveryAttempt, Destination, Event, Subscription
from taskgate.outbound.secretbox import SecretBox, SecretBoxError
from taskgate.runtime.context import JobContext, RetryLater, Runtime
from taskgate.runtime.handlers import JobKind
from taskgate.settings import DeliverySettings, Settings

log = structlog.get_logger()

DELIVERY_KIND = "delivery.send"
# The queue counts every RetryLater as an attempt; the retry period is what ends a delivery,
# so the queue's budget is only a backstop against a handler that keeps crashing.
MAX_JOB_ATTEMPTS = 1000


@dataclass(frozen=True)
class Loaded:
    destination: Destination
    document: dict[str, Any]
    secret: str | None


def backoff_seconds(settings: DeliverySettings, attempts: int) -> float:
    """Exponential (base · 2^(n-1)), capped, then jittered within its upper half, so that
    deliveries failing together do not retry together."""
    ceiling = min(
        settings.max_backoff_seconds, settings.base_backoff_seconds * 2.0 ** (attempts - 1)
    )
    return ceiling / 2 + random.uniform(0, ceiling / 2)


async def send_delivery(ctx: JobContext) -> None:
    delivery_id = uuid.UUID(str(ctx.payload["delivery_id"]))
    settings = ctx.runtime.settings
    async with ctx.transaction() as session:
        loaded = await _load(session, ctx.runtime.services.secret_box, delivery_id)
        if isinstance(loaded, str):
            if loaded:
                await _give_up(session, delivery_id, loaded)
            await ctx.complete(session)
            return

    timeout = settings.delivery.request_timeout_seconds
    client = ctx.runtime.services.delivery_client
    outcome = await send(
        client, loaded.destination, loaded.secret, loaded.document, timeout=timeout
    )

    retry_in: float | None = None
    async with ctx.transaction() as session:
        retry_in = await _record(session, settings, delivery_id, outcome)
        if retry_in is None:
            await ctx.complete(session)
    if retry_in is not None:
        raise RetryLater(outcome.error or "delivery failed", retry_in)


async def _load(session: AsyncSession, box: SecretBox, delivery_id: uuid.UUID) -> Loaded | str:
    """What to send, or why not: `""` when there is nothing left to do, else the reason the
    delivery fails for good."""
    delivery = await session.get(Delivery, delivery_id)
    if delivery is None or delivery.status != "pending":
        return ""  # deleted with its destination, or already settled by an earlier run
    if delivery.subscription_id is None:
        return "the subscription was deleted"
    subscription = await session.get(Subscription, delivery.subscription_id)
    destination = await session.get(Destination, delivery.destination_id)
    if subscription is None or destination is None:
        return "the subscription was deleted"
    if not destination.is_active:
        return "the destination is disabled"
    if not subscription.is_active:
        return "the subscription is paused"
    event = await session.get(Event, delivery.event_id) if delivery.event_id is not None else None
    if event is None:
        return "the event no longer exists"
    try:
        secret = open_secret(box, destination)
    except SecretBoxError:
        return "the destination's secret cannot be decrypted (was its key removed?)"
    return Loaded(destination, event_document(event), secret)


async def _give_up(session: AsyncSession, delivery_id: uuid.UUID, reason: str) -> None:
    delivery = await session.get(Delivery, delivery_id)
    if delivery is not None and delivery.status == "pending":
        delivery.status = "failed"
        delivery.last_error = reason
        delivery.next_attempt_at = None


async def _record(
    session: AsyncSession, settings: Settings, delivery_id: uuid.UUID, outcome: SendOutcome
) -> float | None:
    """Log the attempt and settle its consequences; returns the retry delay, or None when the
    delivery is finished (succeeded, failed or dead)."""
    delivery = await session.get(Delivery, delivery_id, with_for_update=True)
    if delivery is None or delivery.status != "pending":
        return None
    destination = await session.get(Destination, delivery.destination_id, with_for_update=True)
    assert destination is not None  # deleting it would have deleted the delivery
    now = utcnow()
    delivery.attempts += 1
    session.add(
        DeliveryAttempt(
            delivery_id=delivery.id,
            attempt=delivery.attempts,
            status_code=outcome.status_code,
            latency_ms=outcome.latency_ms,
            response_excerpt=outcome.response_excerpt,
            error=outcome.error,
            created_at=now,
        )
    )
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error
    if outcome.success:
        delivery.status, delivery.next_attempt_at = "succeeded", None
        destination.consecutive_failures = 0
        return None

    destination.consecutive_failures += 1
    log.info(
        "delivery_failed",
        delivery_id=str(delivery.id),
        destination_id=str(destination.id),
        attempt=delivery.attempts,
        error=outcome.error,
    )
    if destination.is_active and (
        destination.consecutive_failures >= settings.delivery.disable_after_failures
    ):
        await _disable(session, destination, outcome)
    if outcome.permanent or not destination.is_active:
        delivery.status, delivery.next_attempt_at = "failed", None
        return None
    delay = _next_delay(settings.delivery, delivery, now)
    if delay is None:
        delivery.status, delivery.next_attempt_at = "dead", None
        return None
    delivery.next_attempt_at = now + timedelta(seconds=delay)
    return delay


def _next_delay(settings: DeliverySettings, delivery: Delivery, now: datetime) -> float | None:
    """The wait before the next attempt; None once the retry period is over. The last
    attempt is made at the end of the period rather than skipped."""
    deadline = delivery.created_at + timedelta(seconds=settings.retry_period_seconds)
    remaining = (deadline - now).total_seconds()
    if remaining <= 0:
        return None
    return min(backoff_seconds(settings, delivery.attempts), remaining)


async def _disable(session: AsyncSession, destination: Destination, outcome: SendOutcome) -> None:
    reason = (
        f"disabled after {destination.consecutive_failures} consecutive failed deliveries; "
        f"last error: {outcome.error}"
    )
    destination.is_active = False
    destination.disabled_reason = reason
    await record_event(
        session,
        "destination.disabled",
        owner_id=destination.owner_id,
        project_id=destination.project_id,
        payload={
            "destination_id": str(destination.id),
            "destination_name": destination.name,
            "consecutive_failures": destination.consecutive_failures,
            "reason": reason,
        },
    )
    log.warning("destination_disabled", destination_id=str(destination.id))


async def delivery_job_dead(
    runtime: Runtime, job_id: uuid.UUID, kind: str, payload: dict[str, Any], reason: str
) -> None:
    """The queue gave up on the job (its handler kept crashing): settle the delivery too, so
    the log does not show it pending forever."""
    async with runtime.db.transaction() as session:
        delivery = await session.get(Delivery, uuid.UUID(str(payload["delivery_id"])))
        if delivery is not None and delivery.status == "pending":
            delivery.status, delivery.next_attempt_at = "dead", None
            delivery.last_error = reason[:1000]


DELIVERY_SEND = JobKind(send_delivery, on_dead=delivery_job_dead)


def job_kinds() -> dict[str, JobKind]:
    return {DELIVERY_KIND: DELIVERY_SEND}
