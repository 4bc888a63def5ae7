"""The audit API contract."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

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
