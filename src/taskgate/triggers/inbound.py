"""Inbound webhooks: verify the sender's signature over the raw body, then ingest the event.

Accepted signatures (per the source's ``signature_scheme``):

- ``X-Webhook-Signature: sha256=<hex>`` (or ``X-Signature``, ``X-Hub-Signature-256``): the
  HMAC-SHA256 of the raw body keyed with the secret, compared in constant time.
- Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``): the
  timestamp must be within 5 minutes, and a ``webhook-id`` already received is a replay:
  it gets the first event's id back (200) and starts nothing.

The body: ``{"event_type" | "type": "...", "data" | "payload": {...}}`` names the event and its
payload; any other JSON object is the payload itself, typed by the ``X-Event-Type`` header,
the source's default type or ``webhook.received``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.audit.service import audit
from taskgate.errors import NotFound, Unauthorized
from taskgate.http import json_body
from taskgate.ids import utcnow
from taskgate.models import Event, WebhookReceipt
from taskgate.outbound.secretbox import SecretBox, SecretBoxError
from taskgate.outbound.signing import (
    HEADER_ID,
    HEADER_SIGNATURE,
    SignatureError,
    verify_hmac_sha256,
    verify_standard,
)
from taskgate.triggers import repository as repo
from taskgate.triggers.schemas import EventType
from taskgate.triggers.service import Ingested, ingest_event
from taskgate.triggers.sources import open_secret

log = structlog.get_logger()
REPLAY_WINDOW_SECONDS = 300
HMAC_HEADERS = ("x-webhook-signature", "x-signature", "x-hub-signature-256")
DEFAULT_EVENT_TYPE = "webhook.received"
_TYPE_KEYS = ("event_type", "type", "event")
_DATA_KEYS = ("data", "payload")


@dataclass
class Received:
    ingested: Ingested
    replay: bool


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return headers.get(name) or headers.get(name.title())


def verify(scheme: str, secret: str, headers: Mapping[str, str], body: bytes) -> str | None:
    """Raise ``Unauthorized`` unless the body is signed; return the Standard Webhooks id."""
    standard = _header(headers, HEADER_SIGNATURE) is not None
    try:
        if standard and scheme in ("auto", "standard"):
            verify_standard(
                secret, headers, body, now=time.time(), tolerance_seconds=REPLAY_WINDOW_SECONDS
            )
            return _header(headers, HEADER_ID)
        if scheme == "standard":
            raise SignatureError("missing_headers", "Standard Webhooks headers are required")
        signature = next((v for h in HMAC_HEADERS if (v := _header(headers, h))), None)
        verify_hmac_sha256(secret, signature, body)
        return None
    except SignatureError as exc:
        log.info("webhook_signature_refused", reason=exc.reason)
        raise Unauthorized(f"Invalid webhook signature ({exc.reason}).") from exc


def _event_of(body: bytes, headers: Mapping[str, str], default_type: str | None) -> tuple[str, Any]:
    try:
        document: Any = json_body.loads(body) if body.strip() else {}
    except ValueError:
        document = {"raw": body.decode("utf-8", errors="replace")}
    named: str | None = None
    payload = document
    if isinstance(document, dict):
        named = next((v for k in _TYPE_KEYS if isinstance(v := document.get(k), str)), None)
        data = next((v for k in _DATA_KEYS if isinstance(v := document.get(k), dict)), None)
        if named is not None and data is not None:
            payload = data
    else:
        payload = {"body": document}
    candidate = named or _header(headers, "x-event-type") or default_type
    event_type = DEFAULT_EVENT_TYPE
    if candidate is not None and _valid_type(candidate):
        event_type = candidate
    return event_type, payload


def _valid_type(value: str) -> bool:
    from pydantic import TypeAdapter, ValidationError

    try:
        TypeAdapter(EventType).validate_python(value)
    except ValidationError:
        return False
    return True


async def receive(
    session: AsyncSession, slug: str, headers: Mapping[str, str], body: bytes, box: SecretBox
) -> Received:
    source = await repo.source_by_slug(session, slug)
    if source is None or not source.enabled:
        raise NotFound("No such webhook source.")
    try:
        secret = open_secret(box, source)
    except SecretBoxError as exc:
        log.error("webhook_secret_unreadable", source=slug)
        raise Unauthorized("The webhook source's secret cannot be read.") from exc
    message_id = verify(source.signature_scheme, secret, headers, body)
    receipt: WebhookReceipt | None = None
    if message_id:
        # Older receipts can go: their timestamps are outside the window, so are refused.
        window = timedelta(seconds=2 * REPLAY_WINDOW_SECONDS)
        await repo.forget_receipts(session, source.id, utcnow() - window)
        receipt = WebhookReceipt(source_id=source.id, message_id=message_id[:255])
        try:
            async with session.begin_nested():
                session.add(receipt)
                await session.flush()
        except IntegrityError:
            first = await repo.receipt_of(session, source.id, message_id[:255])
            event = await session.get(Event, first.event_id) if first and first.event_id else None
            if event is None:
                raise
            return Received(Ingested(event, duplicate=True), replay=True)
    event_type, payload = _event_of(body, headers, source.default_event_type)
    ingested = await ingest_event(
        session, source.owner_id, type=event_type, payload=payload, source=source
    )
    if receipt is not None:
        receipt.event_id = ingested.event.id
    source.last_received_at = utcnow()
    await audit(
        session,
        "webhook.receive",
        None,
        actor_name=f"webhook:{slug}",
        resource_type="webhook_source",
        resource_id=source.id,
        detail={
            "event_id": ingested.event.id,
            "type": event_type,
            "executions": len(ingested.executions),
        },
    )
    return Received(ingested, replay=False)
