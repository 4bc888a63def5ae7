"""The audit API contract."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class AuditRecordOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    actor_id: uuid.UUID | None
    actor: str | None
    project_id: uuid.UUID | None = Field(
        description="The project the record belongs to; none for instance-level actions."
    )
    action: str
    resource_type: str | None
    resource_id: str | None
    outcome: str
    ip: str | None
    trace_id: str | None
    detail: dict[str, Any]
    subject: dict[str, Any] | None = Field(
        description="The effective subject: user_id, group_ids, role_names, scope."
    )
    created_at: datetime


@dataclass(frozen=True)
class AuditFilters:
    """What ``GET /api/v1/audit`` narrows the records to."""

    actor_id: uuid.UUID | None = None
    action: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    outcome: Literal["success", "failure"] | None = None
    since: datetime | None = None
    until: datetime | None = None
