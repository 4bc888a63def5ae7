"""Inbound webhooks: verify the sender's signature over the raw body, then ingest the event.

Accepted signatures (per the source's ``signature_scheme``):

- Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``), the
  recommended form: the timestamp must be within 5 minutes, and a ``webhook-id`` already
  received is a retry of the same message: it gets the first event's id back (200) and
  starts nothing.
- ``X-Webhook-Signature: sha256=<hex>`` (or ``X-Signature``, ``X-Hub-Signature-256``): the
  HMAC-SHA256 of the raw body keyed with the secret, compared in constant time. It signs no
  time, so anyone who saw a request could send it again: the same signature within 5 minutes
  is refused (409), remembered in the database so that every API process refuses it.

A source is addressed by its id (``POST /api/v1/webhooks/{id}``, its ``url``) or by its slug.
Slugs are unique only within a project, so a slug may name several sources: the request
belongs to the one whose secret verifies its signature. An unknown id or slug is refused
exactly as a bad signature is (same 401, comparable work), so the endpoint tells nobody
which names exist.

The body: ``{"event_type" | "type": "...", "data" | "payload": {...}}`` names the event and its
payload; any other JSON object is the payload itself, typed by the ``X-Event-Type`` header,
the source's default type or ``webhook.received``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.audit.service import audit
from taskgate.clock import utcnow
from taskgate.errors import Conflict, Unauthorized
from taskgate.http import json_body
from taskgate.models import Event, WebhookReceipt, WebhookSource
from taskgate.outbound.secretbox import SecretBox, SecretBoxError
from taskgate.outbound.signing import (
    HEADER_ID,
    HEADER_SIGNATURE,
    SignatureError,
    generate_webhook_secret,
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
MAX_CANDIDATES = 20
# Verified against when no source matches, so that an unknown name costs what a bad
# signature costs and fails with the same reason; nobody knows it, nothing it signs is kept.
_DUMMY_SECRET = generate_webhook_secret()


@dataclass
class Received:
    ingested: Ingested
    replay: bool


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return headers.get(name) or headers.get(name.title())


@dataclass(frozen=True)
class Signed:
    """What identifies a verified delivery: a Standard Webhooks message id, or else the
    (timeless) ``sha256=`` signature itself, as ``sha256=<hex>``."""

    message_id: str | None = None
    signature: str | None = None


class WebhookReplayed(Conflict):
    def __init__(self) -> None:
        super().__init__(
            "This signed request was already received in the last "
            f"{REPLAY_WINDOW_SECONDS // 60} minutes; a replay is refused. Senders that "
            "retry should use Standard Webhooks headers (webhook-id, webhook-timestamp)."
        )


def verify(scheme: str, secret: str, headers: Mapping[str, str], body: bytes) -> Signed:
    """Raise ``SignatureError`` unless the body is signed; say what identifies the delivery."""
    standard = _header(headers, HEADER_SIGNATURE) is not None
    if standard and scheme in ("auto", "standard"):
        verify_standard(
            secret, headers, body, now=time.time(), tolerance_seconds=REPLAY_WINDOW_SECONDS
        )
        return Signed(message_id=_header(headers, HEADER_ID))
    if scheme == "standard":
        raise SignatureError("missing_headers", "Standard Webhooks headers are required")
    signature = next((v for h in HMAC_HEADERS if (v := _header(headers, h))), None)
    verify_hmac_sha256(secret, signature, body)
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return Signed(signature=f"sha256={digest}")


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
    session: AsyncSession, source_ref: str, headers: Mapping[str, str], body: bytes, box: SecretBox
) -> Received:
    source, signed = await _signed_source(session, source_ref, headers, body, box)
    if await repo.project_disabled(session, source.project_id):
        # Told only to a sender that signed: the source's project takes no more changes.
        raise Conflict("The project is disabled: its webhook sources accept nothing.")
    slug = source.slug
    # Older receipts can go: their timestamps are outside the window, so are refused.
    now = utcnow()
    await repo.forget_receipts(
        session, source.id, now - timedelta(seconds=2 * REPLAY_WINDOW_SECONDS)
    )
    if signed.signature is not None:
        await _refuse_replay(session, source.id, signed.signature, now)
    message_id = signed.message_id
    receipt: WebhookReceipt | None = None
    if message_id:
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
        session, source.owner_id, source.project_id, type=event_type, payload=payload, source=source
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


async def _signed_source(
    session: AsyncSession, source_ref: str, headers: Mapping[str, str], body: bytes, box: SecretBox
) -> tuple[WebhookSource, Signed]:
    """The source ``source_ref`` (an id or a slug) names whose secret verifies the request.

    No candidate at all, a disabled one, an unreadable secret and a bad signature all raise
    the same ``Unauthorized``: its reason comes from verifying against a dummy secret, so it
    depends on the request alone, never on which sources exist or how they are set up.
    """
    # A slug may be shared by many projects; only the first MAX_CANDIDATES sources (by
    # creation) are tried, which bounds the work an unauthenticated request can cause.
    # Oldest first, so a newer source cannot capture the requests of an older one.
    for source in await repo.inbound_candidates(session, source_ref, limit=MAX_CANDIDATES):
        try:
            secret = open_secret(box, source)
        except SecretBoxError:
            log.error("webhook_secret_unreadable", source=str(source.id))
            continue
        try:
            return source, verify(source.signature_scheme, secret, headers, body)
        except SignatureError as exc:
            log.info("webhook_signature_refused", source=str(source.id), reason=exc.reason)
    try:
        verify("auto", _DUMMY_SECRET, headers, body)
    except SignatureError as exc:
        raise Unauthorized(f"Invalid webhook signature ({exc.reason}).") from exc
    raise Unauthorized("Invalid webhook signature (no_matching_signature).")  # pragma: no cover


async def _refuse_replay(
    session: AsyncSession, source_id: uuid.UUID, signature: str, now: datetime
) -> None:
    """Remember a timeless signature for the window; raise ``WebhookReplayed`` if it is
    already remembered. The unique receipt decides between API processes that race."""
    await repo.forget_receipt(
        session, source_id, signature, now - timedelta(seconds=REPLAY_WINDOW_SECONDS)
    )
    try:
        async with session.begin_nested():
            session.add(WebhookReceipt(source_id=source_id, message_id=signature, received_at=now))
            await session.flush()
    except IntegrityError:
        log.info("webhook_replay_refused", source_id=str(source_id))
        raise WebhookReplayed() from None
