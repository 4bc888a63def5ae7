"""Audit log reading: every record for system-scope readers, a project's for its admins
(``governance/audit_service.py`` decides; the records are audit's)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request

from taskgate.audit.schemas import AuditFilters, AuditRecordOut
from taskgate.governance import audit_service
from taskgate.http.auth import AuditRead, Session
from taskgate.http.pagination import Page, PageParams, page_params
from taskgate.http.params import Instant
from taskgate.http.projects import requested_project
from taskgate.openapi import errors

router = APIRouter(prefix="/api/v1", tags=["audit"])
AuditPage = Annotated[PageParams, Depends(page_params(["created_at", "-created_at"]))]


@router.get("/audit", responses=errors(400, 401, 403, 404))
async def list_audit(
    request: Request,
    session: Session,
    principal: AuditRead,
    page: AuditPage,
    actor_id: uuid.UUID | None = None,
    action: str | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    outcome: Literal["success", "failure"] | None = None,
    since: Instant | None = None,
    until: Instant | None = None,
) -> Page[AuditRecordOut]:
    """Newest first: every record for the instance administrator and system viewers (one
    project's when the request names it), the request's project's for its admins."""
    filters = AuditFilters(
        actor_id=actor_id,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        outcome=outcome,
        since=since,
        until=until,
    )
    named = requested_project(request.scope) is not None
    return await audit_service.list_audit(session, principal, filters, page, project_named=named)
