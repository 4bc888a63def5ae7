"""Audit log reading: every record for system-scope readers, a project's for its admins."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request

from taskgate.audit.reading import records_query
from taskgate.audit.repository import AuditFilters
from taskgate.audit.schemas import AuditRecordOut
from taskgate.governance.selection import requested_project
from taskgate.http.auth import CurrentPrincipal, Session
from taskgate.http.pagination import Page, PageParams, page_params, paginate
from taskgate.http.params import Instant
from taskgate.models import AuditRecord
from taskgate.openapi import errors

router = APIRouter(prefix="/api/v1", tags=["audit"])
AuditPage = Annotated[PageParams, Depends(page_params(["created_at", "-created_at"]))]


@router.get("/audit", responses=errors(400, 401, 403, 404))
async def list_audit(
    request: Request,
    session: Session,
    principal: CurrentPrincipal,
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
    filters = AuditFilters(actor_id, action, resource_type, resource_id, outcome, since, until)
    named = requested_project(request.scope) is not None
    stmt = records_query(principal, filters, project_named=named)
    rows, next_link, total = await paginate(
        session, stmt, page, {"created_at": AuditRecord.created_at}, AuditRecord.id
    )
    return Page(
        results=[AuditRecordOut.model_validate(r) for r in rows], next=next_link, count=total
    )
