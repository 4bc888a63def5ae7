"""The events, inbound webhooks and webhook sources API contract."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

EventType = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"),
]
SourceSlug = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9_-]*$")
]
SignatureScheme = Literal["auto", "hmac_sha256", "standard"]


@dataclass(frozen=True)
class EventFilters:
    """What ``GET /api/v1/events`` narrows the caller's events to: exact types, or prefixes
    such as ``order.*``; none (or ``*``) for every type."""

    types: Sequence[str] = ()


class EventCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: EventType = Field(description="A dotted name such as order.created.")
    payload: dict[str, Any] = Field(default_factory=dict)
    dedupe_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="A repeated key (per user) returns the first event and starts nothing new.",
    )


class EventAccepted(BaseModel):
    event_id: int
    trace_id: str | None
    duplicate: bool = False
    execution_ids: list[uuid.UUID] = Field(default_factory=list)


class WebhookAccepted(EventAccepted):
    message: str


class EventOut(BaseModel):
    id: int
    type: str
    created_at: datetime
    task_id: uuid.UUID | None
    run_id: uuid.UUID | None
    job_id: uuid.UUID | None
    execution_id: uuid.UUID | None
    workflow_id: uuid.UUID | None
    session_id: uuid.UUID | None
    dedupe_key: str | None
    payload: dict[str, Any]


class WebhookSourceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    slug: SourceSlug | None = Field(
        default=None,
        description="A short name, unique among the project's sources; derived from the name "
        "when absent. Senders post to the source's url (by id).",
    )
    description: str = Field(default="", max_length=10_000)
    enabled: bool = True
    signature_scheme: SignatureScheme = Field(
        default="auto",
        description="hmac_sha256: X-Webhook-Signature: sha256=<hex>; standard: Standard "
        "Webhooks headers; auto: whichever the request carries.",
    )
    default_event_type: EventType | None = Field(
        default=None, description="The event type when the body does not name one."
    )
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=500,
        description="Write-only. Generated (whsec_...) when absent and shown once.",
    )


class WebhookSourceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    enabled: bool | None = None
    signature_scheme: SignatureScheme | None = None
    default_event_type: EventType | None = None
    secret: str | None = Field(default=None, min_length=16, max_length=500)


class WebhookSourceOut(BaseModel):
    id: uuid.UUID
    name: str
    slug: str
    url: str
    description: str
    enabled: bool
    signature_scheme: SignatureScheme
    default_event_type: str | None
    has_secret: bool = True
    last_received_at: datetime | None
    created_at: datetime
    updated_at: datetime


class WebhookSourceCreated(WebhookSourceOut):
    secret: str = Field(description="Shown only in this response.")
