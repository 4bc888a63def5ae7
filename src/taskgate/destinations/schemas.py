"""The destinations and subscriptions API contract. Secrets go in, never out."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from taskgate.outbound.adapters import DestinationType

Name = Field(min_length=1, max_length=200)
Secret = Field(
    default=None,
    min_length=1,
    max_length=4096,
    description="Write-only: a webhook's signing secret, a chat incoming-webhook URL or a "
    "Matrix access token. Stored encrypted; responses only say `has_secret`.",
)
DeliveryStatus = Literal["pending", "succeeded", "failed", "dead"]


@dataclass(frozen=True)
class DestinationFilters:
    is_active: bool | None = None


@dataclass(frozen=True)
class DeliveryFilters:
    status: DeliveryStatus | None = None
    event_type: str | None = None


@dataclass(frozen=True)
class SubscriptionFilters:
    destination_id: uuid.UUID | None = None


class DestinationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Name
    destination_type: DestinationType
    destination_config: dict[str, Any] = Field(
        default_factory=dict, description="Type-specific settings, without secrets."
    )
    secret: str | None = Secret
    is_active: bool = True


class DestinationUpdate(BaseModel):
    """Only the fields sent change; `"secret": null` removes the secret."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    destination_type: DestinationType | None = None
    destination_config: dict[str, Any] | None = None
    secret: str | None = Secret
    is_active: bool | None = Field(
        default=None, description="true re-enables a disabled destination and resets its failures."
    )


class DestinationOut(BaseModel):
    id: uuid.UUID
    name: str
    destination_type: str
    destination_config: dict[str, Any]
    has_secret: bool
    is_active: bool
    consecutive_failures: int
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


class DestinationTestResult(BaseModel):
    success: bool
    status_code: int | None
    latency_ms: int | None
    response_excerpt: str | None
    error: str | None
    delivery_id: uuid.UUID


class DeliveryAttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    status_code: int | None
    latency_ms: int | None
    response_excerpt: str | None
    error: str | None
    created_at: datetime


class DeliveryOut(BaseModel):
    id: uuid.UUID
    subscription_id: uuid.UUID | None
    destination_id: uuid.UUID
    event_id: int | None
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    attempt_log: list[DeliveryAttemptOut]


EventPattern = Field(
    min_length=1,
    max_length=200,
    description="`*` (every event), an exact type (`task.completed`) or a prefix (`task.*`).",
)
EventFilter = Field(
    default=None,
    description="Match on event fields: every key given must match, nested objects match "
    'recursively, a list means any of its values: `{"payload": {"status": ["FAILED"]}}`.',
)


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    destination_id: uuid.UUID
    event_pattern: str = EventPattern
    filter: dict[str, Any] | None = EventFilter
    is_active: bool = True


class SubscriptionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_pattern: str | None = Field(default=None, min_length=1, max_length=200)
    filter: dict[str, Any] | None = EventFilter
    is_active: bool | None = None


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    destination_id: uuid.UUID
    event_pattern: str
    filter: dict[str, Any] | None
    is_active: bool
    created_at: datetime
