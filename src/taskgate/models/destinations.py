"""Outbound destinations, the subscriptions that route events to them, and deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from taskgate.clock import utcnow
from taskgate.db.base import Base, IdMixin, TimestampMixin
from taskgate.db.types import JSONType, UTCDateTime
from taskgate.models.governance import project_index, project_ref

# Same representation as `events.id` (SQLite only auto-increments an INTEGER primary key).
EventRef = BigInteger().with_variant(Integer(), "sqlite")


class Destination(IdMixin, TimestampMixin, Base):
    """Where events go: a webhook or a chat service. The secret is sealed (AES-GCM)."""

    __tablename__ = "destinations"
    __table_args__ = (project_index("destinations", "created_at"),)

    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = project_ref()
    name: Mapped[str] = mapped_column(String(200))
    destination_type: Mapped[str] = mapped_column(String(32))
    destination_config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    secret_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    secret_kid: Mapped[str | None] = mapped_column(String(64))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    disabled_reason: Mapped[str | None] = mapped_column(Text)


class Subscription(IdMixin, Base):
    """Routes the owner's events matching a pattern (and a filter) to one destination."""

    __tablename__ = "subscriptions"
    # The dispatcher looks up the active subscriptions of an event's owner.
    __table_args__ = (project_index("subscriptions", "is_active"),)

    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = project_ref()
    destination_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("destinations.id", ondelete="CASCADE"), index=True
    )
    event_pattern: Mapped[str] = mapped_column(String(200))
    filter: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Delivery(IdMixin, TimestampMixin, Base):
    """One event on its way to one destination, through one subscription.

    A test send (`POST /destinations/{id}/test`) is a delivery without subscription or event.
    Deleting a subscription keeps its deliveries in the destination's log (`SET NULL`).
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        # An event is delivered once per subscription, however often the dispatcher sees it.
        UniqueConstraint("subscription_id", "event_id"),
        Index("ix_deliveries_destination_id_created_at", "destination_id", "created_at"),
    )

    subscription_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("subscriptions.id", ondelete="SET NULL")
    )
    destination_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("destinations.id", ondelete="CASCADE")
    )
    event_id: Mapped[int | None] = mapped_column(EventRef)
    event_type: Mapped[str] = mapped_column(String(100))
    # pending (waiting or retrying) | succeeded | failed (gave up: nothing a retry would fix)
    # | dead (the retry period ran out)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)


class DeliveryAttempt(IdMixin, Base):
    """One HTTP exchange (or the failure to have one) for a delivery."""

    __tablename__ = "delivery_attempts"

    delivery_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DispatchCursor(Base):
    """The single row recording how far the dispatcher has settled the event log."""

    __tablename__ = "dispatch_cursor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_event_id: Mapped[int] = mapped_column(EventRef, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
