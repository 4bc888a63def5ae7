"""Who reads which audit records.

A system-scope reader (the instance administrator, a system viewer) reads every record, or
one project's when the request names a project. Anyone else reads the records of the
request's project, with ``audit:read`` there (a project's admins and owner). The records
themselves are audit's (``audit/service.py``), which imports no feature."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.audit import service as audit_service
from taskgate.audit.schemas import AuditFilters, AuditRecordOut
from taskgate.auth.principal import Principal
from taskgate.governance.access import authorize, may
from taskgate.http.pagination import Page, PageParams


async def list_audit(
    session: AsyncSession,
    principal: Principal,
    filters: AuditFilters,
    page: PageParams,
    *,
    project_named: bool,
) -> Page[AuditRecordOut]:
    """The records ``principal`` may read; ``project_named``: the request named its project
    (``X-Tenant-ID``, ``?project_id=``), which narrows a system-scope reader to it."""
    if may(principal, "audit:read", None):
        project_id = principal.project_id if project_named else None
    else:
        project_id = authorize(principal, "audit:read")
    return await audit_service.list_audit(session, filters, page, project_id=project_id)
