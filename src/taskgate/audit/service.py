"""Record audit entries in the caller's transaction, or on their own when the caller fails;
and list them. Who reads which records is governance's decision
(``governance/audit_service.py``): this package is below every feature, governance included,
since everything audits."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.audit import repository as repo
from taskgate.audit.schemas import AuditFilters, AuditRecordOut
from taskgate.auth.principal import Principal
from taskgate.clock import utcnow
from taskgate.db.session import Database
from taskgate.http.context import current_client_ip, current_trace_id
from taskgate.http.pagination import Page, PageParams, page_of
from taskgate.ids import new_id
from taskgate.models import AuditRecord
from taskgate.outbound.secretbox import redact


def audit_values(
    action: str,
    actor: Principal | None,
    *,
    resource_type: str | None,
    resource_id: uuid.UUID | str | None,
    outcome: str,
    detail: dict[str, Any] | None,
    actor_name: str | None,
    project_id: uuid.UUID | None = None,
    system_scope: bool = False,
) -> dict[str, Any]:
    """An audit row's columns, stamped with the current request's trace id and client address
    (every key present, so rows of many requests can go into one multi-row INSERT), and the
    actor's effective subject in ``project_id`` (default: the actor's project), or at system
    scope (``system_scope``: an instance-level action, in no project)."""
    now = utcnow()
    if actor is not None and project_id is None and not system_scope:
        project_id = actor.project_id
    return {
        "id": new_id(),
        "actor_id": actor.user_id if actor else None,
        "actor": actor.username if actor else actor_name,
        "project_id": project_id,
        "subject": actor.subject_in(project_id) if actor else None,
        "action": action,
        "resource_type": resource_type,
        "resource_id": str(resource_id) if resource_id is not None else None,
        "outcome": outcome,
        "ip": current_client_ip(),
        "trace_id": current_trace_id(),
        "detail": redact(detail or {}),
        "created_at": now,
    }


async def audit(
    session: AsyncSession,
    action: str,
    actor: Principal | None,
    *,
    resource_type: str | None = None,
    resource_id: uuid.UUID | str | None = None,
    outcome: str = "success",
    detail: dict[str, Any] | None = None,
    actor_name: str | None = None,
    project_id: uuid.UUID | None = None,
    system_scope: bool = False,
) -> None:
    """Audit inside the unit of work: kept only if the change itself commits."""
    values = audit_values(
        action,
        actor,
        resource_type=resource_type,
        resource_id=resource_id,
        outcome=outcome,
        detail=detail,
        actor_name=actor_name,
        project_id=project_id,
        system_scope=system_scope,
    )
    session.add(AuditRecord(**values))


async def audit_failure(
    db: Database,
    action: str,
    actor: Principal | None,
    *,
    resource_type: str | None = None,
    resource_id: uuid.UUID | str | None = None,
    detail: dict[str, Any] | None = None,
    actor_name: str | None = None,
) -> None:
    """Audit a refused attempt in its own transaction, since the request's rolls back."""
    values = audit_values(
        action,
        actor,
        resource_type=resource_type,
        resource_id=resource_id,
        outcome="failure",
        detail=detail,
        actor_name=actor_name,
    )
    async with db.transaction() as session:
        session.add(AuditRecord(**values))


async def record(db: Database, values: dict[str, Any]) -> None:
    """Write an audit row built earlier (``audit_values``) in a unit of work of its own."""
    async with db.transaction() as session:
        session.add(AuditRecord(**values))


async def list_audit(
    session: AsyncSession,
    filters: AuditFilters,
    page: PageParams,
    *,
    project_id: uuid.UUID | None,
) -> Page[AuditRecordOut]:
    """The records of project ``project_id`` (None: every record), newest first by default;
    the caller decided that its principal may read them."""
    listing = repo.audit_listing(filters, project_id=project_id)
    return await page_of(session, listing, page, AuditRecordOut.model_validate)
