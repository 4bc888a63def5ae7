"""Audit log reading, for instance administrators and system-scope viewers."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends

from taskgate.audit import service
from taskgate.audit.schemas import AuditFilters, AuditRecordOut
from taskgate.http.auth import AuditRead, Session
from taskgate.http.pagination import Page, PageParams, page_params
from taskgate.http.params import Instant
from taskgate.openapi import errors

router = APIRouter(prefix="/api/v1", tags=["audit"])
AuditPage = Annotated[PageParams, Depends(page_params(["created_at", "-created_at"]))]


@router.get("/audit", responses=errors(400, 401, 403))
async def list_audit(
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
    filters = AuditFilters(
        actor_id=actor_id,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        outcome=outcome,
        since=since,
        until=until,
    )
    return await service.list_audit(session, principal, filters, page)
