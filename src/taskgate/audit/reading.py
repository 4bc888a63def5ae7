"""Who reads which audit records.

A system-scope reader (the instance administrator, a system viewer) reads every record, or
one project's when the request names a project. Anyone else reads the records of the
request's project, with ``audit:read`` there (a project's admins and owner)."""

from __future__ import annotations

from sqlalchemy import Select

from taskgate.audit.repository import AuditFilters, audit_query
from taskgate.governance.access import authorize, may
from taskgate.identity.principal import Principal
from taskgate.models import AuditRecord


def records_query(
    principal: Principal, filters: AuditFilters, *, project_named: bool
) -> Select[tuple[AuditRecord]]:
    """The records ``principal`` may read; ``project_named``: the request named its project
    (``X-Tenant-ID``, ``?project_id=``), which narrows a system-scope reader to it."""
    if may(principal, "audit:read", None):
        return audit_query(filters, project_id=principal.project_id if project_named else None)
    return audit_query(filters, project_id=authorize(principal, "audit:read"))
