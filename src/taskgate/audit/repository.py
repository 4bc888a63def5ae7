"""Audit queries."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from taskgate.audit.schemas import AuditFilters
from taskgate.http.pagination import Listing
from taskgate.models import AuditRecord


def audit_listing(filters: AuditFilters, *, project_id: uuid.UUID | None) -> Listing[AuditRecord]:
    """Records matching ``filters``, of project ``project_id`` (None: of every project, and
    the instance-level ones)."""
    stmt = select(AuditRecord)
    if project_id is not None:
        stmt = stmt.where(AuditRecord.project_id == project_id)
    if filters.actor_id is not None:
        stmt = stmt.where(AuditRecord.actor_id == filters.actor_id)
    if filters.action is not None:
        stmt = stmt.where(AuditRecord.action == filters.action)
    if filters.resource_type is not None:
        stmt = stmt.where(AuditRecord.resource_type == filters.resource_type)
    if filters.resource_id is not None:
        stmt = stmt.where(AuditRecord.resource_id == filters.resource_id)
    if filters.outcome is not None:
        stmt = stmt.where(AuditRecord.outcome == filters.outcome)
    if filters.since is not None:
        stmt = stmt.where(AuditRecord.created_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(AuditRecord.created_at < filters.until)
    return Listing(stmt, {"created_at": AuditRecord.created_at}, AuditRecord.id)
