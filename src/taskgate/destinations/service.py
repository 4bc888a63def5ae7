"""Destination use cases: create, list, read, change, delete (the secret is sealed, never
shown), and the delivery log."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

import structlog
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.audit.service import audit
from taskgate.auth.principal import Principal
from taskgate.destinations import repository as repo
from taskgate.destinations.schemas import (
    DeliveryAttemptOut,
    DeliveryFilters,
    DeliveryOut,
    DestinationCreate,
    DestinationFilters,
    DestinationOut,
    DestinationUpdate,
)
from taskgate.destinations.sealing import open_secret, seal_secret
from taskgate.errors import FieldProblem, NotFound, ValidationFailed
from taskgate.governance.access import authorize
from taskgate.http.pagination import Page, PageParams, page_of, paginate
from taskgate.ids import new_id
from taskgate.models import Destination
from taskgate.outbound.adapters import validate_config
from taskgate.outbound.secretbox import SecretBoxError, secret_box
from taskgate.outbound.ssrf import BlockedURLError, check_url, url_policy
from taskgate.settings import Settings

log = structlog.get_logger()


def destination_out(destination: Destination) -> DestinationOut:
    return DestinationOut(
        id=destination.id,
        name=destination.name,
        destination_type=destination.destination_type,
        destination_config=destination.destination_config,
        has_secret=destination.secret_ciphertext is not None,
        is_active=destination.is_active,
        consecutive_failures=destination.consecutive_failures,
        disabled_reason=destination.disabled_reason,
        created_at=destination.created_at,
        updated_at=destination.updated_at,
    )


def _url_field(destination_type: str) -> str:
    """Where the URL taskgate will call lives, as the API body names it."""
    if destination_type == "webhook":
        return "destination_config.url"
    if destination_type == "matrix":
        return "destination_config.homeserver"
    return "secret"  # a chat incoming-webhook URL is itself the credential


def refuse_problems(what: str, problems: Sequence[tuple[str, str]]) -> None:
    """A 400 naming every ``(field, message)`` problem of the ``what``, if it has any."""
    if problems:
        details = [FieldProblem(field, message) for field, message in problems]
        summary = "; ".join(f"{p.field}: {p.message}" for p in details)
        raise ValidationFailed(f"The {what} is not valid: {summary}", details=details)


def refuse_nulls(body: BaseModel, fields: Iterable[str]) -> None:
    """An update changes only the fields sent; one of ``fields`` sent as null is a 400."""
    for field in fields:
        if field in body.model_fields_set and getattr(body, field) is None:
            raise ValidationFailed.field(field, "may not be null")


async def _validate(
    settings: Settings, destination_type: str, config: dict[str, object], secret: str | None
) -> None:
    """400 naming every field that is wrong; then the URL policy (the SSRF guard)."""
    refuse_problems("destination", validate_config(destination_type, config, secret))
    field = _url_field(destination_type)
    url = secret if field == "secret" else config.get(field.removeprefix("destination_config."))
    assert isinstance(url, str)  # validate_config has checked it is
    try:
        await check_url(url.strip(), url_policy(settings))
    except BlockedURLError as exc:
        # The reason names the host, never the URL (which may be a credential).
        raise ValidationFailed.field(field, exc.reason) from exc


async def create_destination(
    session: AsyncSession, settings: Settings, principal: Principal, body: DestinationCreate
) -> Destination:
    project_id = authorize(principal, "destination:create")
    await _validate(settings, body.destination_type, body.destination_config, body.secret)
    destination = Destination(
        id=new_id(),
        owner_id=principal.user_id,
        project_id=project_id,
        name=body.name,
        destination_type=body.destination_type,
        destination_config=body.destination_config,
        is_active=body.is_active,
        consecutive_failures=0,
    )
    seal_secret(secret_box(settings), destination, body.secret)
    session.add(destination)
    await session.flush()
    await audit(
        session,
        "destination.create",
        principal,
        resource_type="destination",
        resource_id=destination.id,
        detail={"name": destination.name, "destination_type": destination.destination_type},
    )
    log.info("destination_created", destination_id=str(destination.id))
    return destination


async def list_destinations(
    session: AsyncSession, principal: Principal, filters: DestinationFilters, page: PageParams
) -> Page[DestinationOut]:
    """The destinations of the request's project, whoever made them."""
    project_id = authorize(principal, "destination:read")
    return await page_of(
        session, repo.destinations_listing(project_id, filters), page, destination_out
    )


async def list_deliveries(
    session: AsyncSession,
    principal: Principal,
    destination_id: uuid.UUID,
    filters: DeliveryFilters,
    page: PageParams,
) -> Page[DeliveryOut]:
    """The destination's delivery log, each delivery with its attempts."""
    destination = await get_destination(session, principal, destination_id)
    window = await paginate(session, repo.deliveries_listing(destination.id, filters), page)
    attempts = await repo.attempts_of(session, [r.id for r in window.rows])
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
        for r in window.rows
    ]
    return window.page(results)


async def get_destination(
    session: AsyncSession,
    principal: Principal,
    destination_id: uuid.UUID,
    permission: str = "destination:read",
) -> Destination:
    """The destination, if ``principal`` holds ``permission`` in its project (reading: any
    role there; changing: its admins); 404 when missing or in a project it does not see."""
    destination = await repo.destination_for(session, destination_id)
    if destination is None:
        raise NotFound("No such destination.")
    authorize(
        principal,
        permission,
        project_id=destination.project_id,
        owner_id=destination.owner_id,
        resource_id=destination.id,
    )
    return destination


async def update_destination(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    destination_id: uuid.UUID,
    body: DestinationUpdate,
) -> Destination:
    destination = await get_destination(session, principal, destination_id, "destination:update")
    sent = body.model_fields_set
    refuse_nulls(body, ("name", "destination_type", "destination_config", "is_active"))
    changed = sorted(sent)
    delivery_changed = sent & {"destination_type", "destination_config", "secret"}
    box = secret_box(settings)
    if delivery_changed:
        destination_type = body.destination_type or destination.destination_type
        config = (
            body.destination_config
            if body.destination_config is not None
            else destination.destination_config
        )
        if "secret" in sent:
            secret = body.secret
        else:
            try:
                secret = open_secret(box, destination)
            except SecretBoxError as exc:
                raise ValidationFailed.field(
                    "secret", "the stored secret cannot be decrypted; send it again"
                ) from exc
        await _validate(settings, destination_type, config, secret)
        destination.destination_type = destination_type
        destination.destination_config = config
        if "secret" in sent:
            seal_secret(box, destination, secret)
    if body.name is not None:
        destination.name = body.name
    if body.is_active is not None:
        if body.is_active and not destination.is_active:
            # Re-enabling is the owner's word that the endpoint works again.
            destination.consecutive_failures = 0
            destination.disabled_reason = None
        destination.is_active = body.is_active
    await session.flush()
    await audit(
        session,
        "destination.update",
        principal,
        resource_type="destination",
        resource_id=destination.id,
        detail={"changed_fields": changed, "is_active": destination.is_active},
    )
    return destination


async def delete_destination(
    session: AsyncSession, principal: Principal, destination_id: uuid.UUID
) -> None:
    destination = await get_destination(session, principal, destination_id, "destination:delete")
    await session.delete(destination)
    await session.flush()
    await audit(
        session,
        "destination.delete",
        principal,
        resource_type="destination",
        resource_id=destination_id,
        detail={"name": destination.name},
    )
