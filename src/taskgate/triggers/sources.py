"""Webhook source use cases: create (the secret shown once), list, read, change, delete."""

from __future__ import annotations

import re
import secrets as _random
import uuid

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.audit.service import audit
from taskgate.auth.principal import Principal
from taskgate.clock import utcnow
from taskgate.errors import Conflict, NotFound
from taskgate.governance.access import authorize
from taskgate.http.pagination import Page, PageParams, page_of
from taskgate.ids import new_id
from taskgate.models import WebhookSource
from taskgate.outbound.secretbox import SecretBox
from taskgate.outbound.signing import generate_webhook_secret
from taskgate.triggers import repository as repo
from taskgate.triggers.schemas import (
    WebhookSourceCreate,
    WebhookSourceCreated,
    WebhookSourceOut,
    WebhookSourceUpdate,
)


def _aad(source_id: uuid.UUID) -> bytes:
    return f"webhook_source:{source_id}".encode()


def seal(box: SecretBox, source: WebhookSource, secret: str) -> None:
    source.secret_ciphertext, source.secret_kid = box.encrypt(secret, aad=_aad(source.id))


def open_secret(box: SecretBox, source: WebhookSource) -> str:
    return box.decrypt(source.secret_ciphertext, source.secret_kid, aad=_aad(source.id))


async def _free_slug(session: AsyncSession, project_id: uuid.UUID, name: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:80] or "source"
    if not await repo.slug_exists(session, project_id, base):
        return base
    while True:
        slug = f"{base}-{_random.token_hex(3)}"
        if not await repo.slug_exists(session, project_id, slug):
            return slug


def _slug_taken(slug: str) -> Conflict:
    return Conflict(f"This project already has a webhook source with the slug {slug!r}.")


async def create_source(
    session: AsyncSession, principal: Principal, body: WebhookSourceCreate, box: SecretBox
) -> tuple[WebhookSource, str]:
    # Slugs are unique within a project only, so a taken one tells nothing about other
    # projects' sources.
    project_id = authorize(principal, "webhook_source:create")
    if body.slug is not None:
        if await repo.slug_exists(session, project_id, body.slug):
            raise _slug_taken(body.slug)
        slug = body.slug
    else:
        slug = await _free_slug(session, project_id, body.name)
    secret = body.secret or generate_webhook_secret()
    source = WebhookSource(
        id=new_id(),
        owner_id=principal.user_id,
        project_id=project_id,
        name=body.name,
        slug=slug,
        description=body.description,
        enabled=body.enabled,
        signature_scheme=body.signature_scheme,
        default_event_type=body.default_event_type,
    )
    seal(box, source, secret)
    session.add(source)
    try:
        await session.flush()
    except IntegrityError as exc:
        # Another request took the slug in this project between our check and this insert.
        raise _slug_taken(slug) from exc
    await audit(
        session,
        "webhook_source.create",
        principal,
        resource_type="webhook_source",
        resource_id=source.id,
        detail={"slug": slug},
    )
    return source, secret


async def list_sources(
    session: AsyncSession, principal: Principal, page: PageParams
) -> Page[WebhookSourceOut]:
    """The webhook sources of the request's project, whoever made them."""
    listing = repo.sources_listing(authorize(principal, "webhook_source:read"))
    return await page_of(session, listing, page, source_out)


async def get_source(
    session: AsyncSession,
    principal: Principal,
    source_id: uuid.UUID,
    permission: str = "webhook_source:read",
) -> WebhookSource:
    """The source, if ``principal`` holds ``permission`` in its project (reading: any role
    there; changing: its admins); 404 when missing or in a project it does not see."""
    source = await repo.source_of(session, source_id)
    if source is None:
        raise NotFound("Webhook source not found.")
    authorize(
        principal,
        permission,
        project_id=source.project_id,
        owner_id=source.owner_id,
        resource_id=source.id,
    )
    return source


async def update_source(
    session: AsyncSession,
    principal: Principal,
    source_id: uuid.UUID,
    body: WebhookSourceUpdate,
    box: SecretBox,
) -> WebhookSource:
    source = await get_source(session, principal, source_id, "webhook_source:update")
    changes = body.model_dump(exclude_unset=True)
    secret = changes.pop("secret", None)
    for key, value in changes.items():
        if value is not None or key == "default_event_type":
            setattr(source, key, value)
    if secret is not None:
        seal(box, source, secret)
    source.updated_at = utcnow()
    fields = sorted(changes) + (["secret"] if secret is not None else [])
    await audit(
        session,
        "webhook_source.update",
        principal,
        resource_type="webhook_source",
        resource_id=source.id,
        detail={"fields": fields},
    )
    return source


async def delete_source(session: AsyncSession, principal: Principal, source_id: uuid.UUID) -> None:
    source = await get_source(session, principal, source_id, "webhook_source:delete")
    await session.delete(source)
    await audit(
        session,
        "webhook_source.delete",
        principal,
        resource_type="webhook_source",
        resource_id=source.id,
    )


def source_out(source: WebhookSource) -> WebhookSourceOut:
    return WebhookSourceOut(
        id=source.id,
        name=source.name,
        slug=source.slug,
        url=f"/api/v1/webhooks/{source.id}",
        description=source.description,
        enabled=source.enabled,
        signature_scheme=source.signature_scheme,
        default_event_type=source.default_event_type,
        last_received_at=source.last_received_at,
        created_at=source.created_at,
        updated_at=source.updated_at,
    )


def source_created(source: WebhookSource, secret: str) -> WebhookSourceCreated:
    return WebhookSourceCreated(**source_out(source).model_dump(), secret=secret)
