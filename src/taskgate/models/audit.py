"""Audit records: who did what to which resource, and how it ended."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from taskgate.clock import utcnow
from taskgate.db.base import Base, IdMixin
from taskgate.db.types import JSONType, UTCDateTime


class AuditRecord(IdMixin, Base):
    __tablename__ = "audit_records"
    __table_args__ = (
        Index("ix_audit_records_actor_created", "actor_id", "created_at"),
        Index("ix_audit_records_project_id_created_at", "project_id", "created_at"),
    )

    actor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    actor: Mapped[str | None] = mapped_column(String(200))
    project_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    action: Mapped[str] = mapped_column(String(100), index=True)
    resource_type: Mapped[str | None] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    ip: Mapped[str | None] = mapped_column(String(64))
    trace_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
