"""The event API contract (streams send exactly this shape as ``data`` / ``payload``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EventOut(BaseModel):
    """One committed event. ``id`` increases globally; the SSE ``event:`` field is ``type``."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Global, increasing; resume streams after it.")
    type: str = Field(description="Stable dotted name, e.g. task.completed.")
    created_at: datetime
    task_id: uuid.UUID | None = None
    run_id: uuid.UUID | None = None
    job_id: uuid.UUID | None = None
    execution_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    payload: dict[str, Any] = Field(default_factory=dict)


class StreamTicketOut(BaseModel):
    ticket: str = Field(description="Pass as `?ticket=` to one stream connection; used once.")
    expires_at: datetime = Field(description="Unused after this, it is refused.")
