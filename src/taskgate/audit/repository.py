"""Audit queries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select

from taskgate.models import AuditRecord


@dataclass(frozen=True)
class AuditFilters:
    actor_id: uuid.UUID | None = None
    action: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def audit_query(
    filters: AuditFilters, *, project_id: uuid.UUID | None
) -> Select[tuple[AuditRecord]]:
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
    return stmt
