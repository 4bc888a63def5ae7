"""API key use cases: create (shown once), list, rotate, revoke, and last-used bookkeeping.

A key belongs to its user and acts as that user, within its scopes and, when it has one, its
project (``project_id``): what it may do is what its user may do there, intersected with its
scopes. A key never mints or learns a broader key."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.audit.service import audit
from taskgate.auth.credentials import generate_api_key
from taskgate.auth.principal import Authenticator, Principal
from taskgate.clock import utcnow
from taskgate.db.session import Database
from taskgate.errors import Forbidden, NotFound, ValidationFailed
from taskgate.governance.access import sees
from taskgate.governance.changes import changed
from taskgate.http.pagination import Page, PageParams, page_of
from taskgate.identity import repository as repo
from taskgate.identity.schemas import ApiKeyCreate, ApiKeyOut
from taskgate.models import ApiKey, Project

_SCOPE_FAMILIES = frozenset(
    {
        "tasks",
        "runs",
        "jobs",
        "sessions",
        "workflows",
        "executions",
        "events",
        "schedules",
        "destinations",
        "subscriptions",
        "webhooks",
        "approvals",
        "users",
        "api-keys",
        "audit",
        "stream",
        "projects",
        "groups",
        "role-bindings",
        "access-rules",
    }
)


def _check_scopes(scopes: list[str]) -> None:
    for index, scope in enumerate(scopes):
        family, _, action = scope.partition(":")
        if scope == "*":
            continue
        if family not in _SCOPE_FAMILIES or action not in ("read", "write", "*"):
            raise ValidationFailed.field(
                f"scopes.{index}", f"unknown scope {scope!r}; use '*' or '<resource>:read|write|*'"
            )


def _require_within(principal: Principal, scopes: list[str]) -> None:
    """A limited key may not mint, or learn the secret of, a broader one."""
    if not all(principal.has_scope(scope) for scope in scopes):
        raise ValidationFailed.field("scopes", "cannot exceed the scopes of the calling key")


async def list_api_keys(
    session: AsyncSession, principal: Principal, page: PageParams
) -> Page[ApiKeyOut]:
    """The caller's own keys (never their secrets)."""
    listing = repo.api_keys_listing(principal.user_id)
    return await page_of(session, listing, page, ApiKeyOut.model_validate)


async def create_api_key(
    session: AsyncSession, principal: Principal, body: ApiKeyCreate
) -> tuple[ApiKey, str]:
    _check_scopes(body.scopes)
    _require_within(principal, body.scopes)
    project_id = await _key_project(session, principal, body.project_id)
    expires_at = body.expires_at
    if expires_at is not None:
        expires_at = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
        if expires_at <= utcnow():
            raise ValidationFailed.field("expires_at", "must be in the future")
    new = generate_api_key()
    key = ApiKey(
        user_id=principal.user_id,
        name=body.name,
        prefix=new.prefix,
        key_hash=new.key_hash,
        scopes=body.scopes,
        project_id=project_id,
        expires_at=expires_at,
    )
    session.add(key)
    await session.flush()
    await audit(
        session,
        "api_key.create",
        principal,
        resource_type="api_key",
        resource_id=key.id,
        detail={
            "name": key.name,
            "scopes": key.scopes,
            "project_id": str(project_id) if project_id else None,
        },
    )
    return key, new.key


async def _key_project(
    session: AsyncSession, principal: Principal, project_id: uuid.UUID | None
) -> uuid.UUID | None:
    """The project a new key is restricted to: one its user sees; a restricted key mints
    keys of its own project only."""
    restricted = principal.key_project_id
    if project_id is None:
        return restricted
    if restricted is not None and project_id != restricted:
        raise ValidationFailed.field("project_id", "cannot exceed the calling key's project")
    if await session.get(Project, project_id) is None or not sees(principal, project_id):
        raise ValidationFailed.field("project_id", "no such project")
    return project_id


async def get_api_key(session: AsyncSession, principal: Principal, key_id: uuid.UUID) -> ApiKey:
    key = await repo.api_key_for(session, key_id, principal.user_id)
    if key is None:
        raise NotFound("No such API key.")
    return key


async def revoke_api_key(
    session: AsyncSession, principal: Principal, key_id: uuid.UUID, authenticator: Authenticator
) -> None:
    key = await get_api_key(session, principal, key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    authenticator.forget_keys(session)
    await changed(session)
    await audit(session, "api_key.revoke", principal, resource_type="api_key", resource_id=key.id)


async def rotate_api_key(
    session: AsyncSession, principal: Principal, key_id: uuid.UUID, authenticator: Authenticator
) -> tuple[ApiKey, str]:
    key = await get_api_key(session, principal, key_id)
    if key.revoked_at is not None:
        raise NotFound("No such API key.")
    _require_within(principal, key.scopes)
    if principal.key_project_id is not None and key.project_id != principal.key_project_id:
        raise Forbidden("A key restricted to one project cannot rotate a key beyond it.")
    new = generate_api_key()
    key.prefix = new.prefix
    key.key_hash = new.key_hash
    authenticator.forget_keys(session)
    await changed(session)
    await audit(session, "api_key.rotate", principal, resource_type="api_key", resource_id=key.id)
    return key, new.key


async def flush_last_used(db: Database, authenticator: Authenticator) -> None:
    """Persist last-used times gathered in memory, so verification never writes per request."""
    used = authenticator.key_last_used
    if not used:
        return
    authenticator.key_last_used = {}
    stamps = {key_id: datetime.fromtimestamp(at, UTC) for key_id, at in used.items()}
    async with db.transaction() as session:
        await repo.touch_api_keys(session, stamps)
