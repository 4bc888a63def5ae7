"""`POST /destinations/{id}/test`: send a synthetic event now and report what came back.

The exchange happens between two short transactions, not inside the request's: holding a
write transaction (on SQLite, the database's write lock) across a network call would stall
every other writer for up to the request timeout.
"""

from __future__ import annotations

import uuid

from taskgate.audit.service import audit
from taskgate.auth.principal import Principal
from taskgate.clock import isoformat, utcnow
from taskgate.db.session import Database
from taskgate.destinations.schemas import DestinationTestResult
from taskgate.destinations.sealing import open_secret
from taskgate.destinations.sending import EXCERPT_BYTES, SendOutcome, send
from taskgate.destinations.service import get_destination
from taskgate.ids import new_id
from taskgate.models import Delivery, DeliveryAttempt
from taskgate.outbound.guarded_http import guarded_client
from taskgate.outbound.secretbox import SecretBoxError, secret_box
from taskgate.outbound.ssrf import url_policy
from taskgate.settings import Settings

TEST_EVENT_TYPE = "destination.test"


async def probe_destination(
    db: Database, settings: Settings, principal: Principal, destination_id: uuid.UUID
) -> DestinationTestResult:
    async with db.transaction(write=False) as session:
        destination = await get_destination(session, principal, destination_id, "destination:test")
        session.expunge(destination)
    delivery_id = new_id()
    document = {
        "id": f"test_{delivery_id}",
        "type": TEST_EVENT_TYPE,
        "created_at": isoformat(utcnow()),
        "payload": {
            "destination_id": str(destination.id),
            "destination_name": destination.name,
            "message": "A test delivery from taskgate.",
        },
    }
    try:
        secret = open_secret(secret_box(settings), destination)
    except SecretBoxError:
        outcome = SendOutcome(False, None, None, None, "the stored secret cannot be decrypted")
    else:
        timeout = settings.delivery.request_timeout_seconds
        async with guarded_client(
            url_policy(settings), timeout=timeout, max_response_bytes=EXCERPT_BYTES
        ) as client:
            outcome = await send(client, destination, secret, document, timeout=timeout)

    async with db.transaction() as session:
        # The destination may have been deleted meanwhile: then there is no log to write to.
        if await session.get(type(destination), destination.id) is not None:
            session.add(
                Delivery(
                    id=delivery_id,
                    destination_id=destination.id,
                    event_type=TEST_EVENT_TYPE,
                    status="succeeded" if outcome.success else "failed",
                    attempts=1,
                    last_status_code=outcome.status_code,
                    last_error=outcome.error,
                )
            )
            await session.flush()
            session.add(
                DeliveryAttempt(
                    delivery_id=delivery_id,
                    attempt=1,
                    status_code=outcome.status_code,
                    latency_ms=outcome.latency_ms,
                    response_excerpt=outcome.response_excerpt,
                    error=outcome.error,
                )
            )
        await audit(
            session,
            "destination.test",
            principal,
            resource_type="destination",
            resource_id=destination.id,
            outcome="success" if outcome.success else "failure",
            detail={"status_code": outcome.status_code, "error": outcome.error},
        )
    return DestinationTestResult(
        success=outcome.success,
        status_code=outcome.status_code,
        latency_ms=outcome.latency_ms,
        response_excerpt=outcome.response_excerpt,
        error=outcome.error,
        delivery_id=delivery_id,
    )
