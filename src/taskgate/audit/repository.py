"""Audit queries."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Select, select

from taskgate.models import AuditRecord


def audit_query(
    *,
    actor_id: uuid.UUID | None,
    action: str | None,
    resource_type: str | None,
    resource_id: str | None,
    outcome: str | None,
    since: datetime | None,
    until: datetime | None,
) -> Select[tuple[AuditRecord]]:
    stmt = select(AuditRecord)
    if actor_id is not None:
        stmt = stmt.where(AuditRecord.actor_id == actor_id)
    if action is not None:
        stmt = stmt.where(AuditRecord.action == action)
    if resource_type is not None:
        stmt = stmt.where(AuditRecord.resource_type == resource_type)
    if resource_id is not None:
        stmt = stmt.where(AuditRecord.resource_id == resource_id)
    if outcome is not None:
        stmt = stmt.where(AuditRecord.outcome == outcome)
    if since is not None:
        stmt = stmt.where(AuditRecord.created_at >= since)
    if until is not None:
        stmt = stmt.where(AuditRecord.created_at < until)
    return stmt
