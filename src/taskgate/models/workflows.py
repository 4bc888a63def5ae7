"""Workflows, their immutable versions, executions and steps, webhook sources, approvals."""

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


class Workflow(IdMixin, TimestampMixin, Base):
    """The current definition; every change also writes a ``WorkflowVersion``."""

    __tablename__ = "workflows"
    __table_args__ = (
        project_index("workflows", "created_at"),
        project_index("workflows", "updated_at"),
        project_index("workflows", "name"),
        project_index("workflows", "slug"),
        project_index("workflows", "trigger_type"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = project_ref()
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    trigger_type: Mapped[str] = mapped_column(String(16))
    trigger_config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    graph: Mapped[dict[str, Any]] = mapped_column(JSONType)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Values that templates reach as ``{{ secrets.NAME }}``: one sealed JSON object.
    secrets_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    secrets_kid: Mapped[str | None] = mapped_column(String(64))
    secret_names: Mapped[list[str]] = mapped_column(JSONType, default=list)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WorkflowVersion(IdMixin, Base):
    """A frozen copy of a workflow as it was at one version; executions pin one."""

    __tablename__ = "workflow_versions"
    __table_args__ = (UniqueConstraint("workflow_id", "version"),)

    workflow_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workflows.id", ondelete="CASCADE")
    )
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean)
    trigger_type: Mapped[str] = mapped_column(String(16))
    trigger_config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    graph: Mapped[dict[str, Any]] = mapped_column(JSONType)
    change: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str | None] = mapped_column(String(150))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WorkflowExecution(IdMixin, TimestampMixin, Base):
    __tablename__ = "workflow_executions"
    __table_args__ = (
        project_index("workflow_executions", "created_at"),
        Index("ix_workflow_executions_workflow_id_created_at", "workflow_id", "created_at"),
        project_index("workflow_executions", "status"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = project_ref()
    workflow_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workflows.id", ondelete="CASCADE")
    )
    version_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workflow_versions.id", ondelete="CASCADE")
    )
    workflow_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(16))
    input: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # What templates see as ``event``: {id, type, source, payload, ...}; empty when manual.
    event: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    trigger_event_id: Mapped[int | None] = mapped_column(BigInteger)
    replay_of_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    error_summary: Mapped[str | None] = mapped_column(Text)
    trace_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ExecutionStep(IdMixin, TimestampMixin, Base):
    """One node of one execution; written before the node runs and after it ends."""

    __tablename__ = "execution_steps"
    __table_args__ = (UniqueConstraint("execution_id", "node_key"),)

    execution_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workflow_executions.id", ondelete="CASCADE")
    )
    node_key: Mapped[str] = mapped_column(String(64))
    node_type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    input_data: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    output_data: Mapped[Any] = mapped_column(JSONType, nullable=True)
    error: Mapped[str | None] = mapped_column(Text)
    condition_result: Mapped[bool | None] = mapped_column(Boolean)
    # Kept across attempts so a resumed step reuses what it already started.
    task_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    approval_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    wake_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookSource(IdMixin, TimestampMixin, Base):
    """Where inbound webhooks come from: ``POST /api/v1/webhooks/{id or slug}``, signed with a
    secret."""

    __tablename__ = "webhook_sources"
    __table_args__ = (
        project_index("webhook_sources", "created_at"),
        # A slug names a source within its project; an inbound request by slug goes to the
        # source whose secret signed it, so slugs need not be unique across projects. The
        # slug index serves that lookup.
        UniqueConstraint("project_id", "slug"),
        Index("ix_webhook_sources_slug", "slug"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = project_ref()
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # "auto" accepts either scheme; "hmac_sha256" or "standard" insist on one.
    signature_scheme: Mapped[str] = mapped_column(String(16), default="auto")
    default_event_type: Mapped[str | None] = mapped_column(String(100))
    secret_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    secret_kid: Mapped[str] = mapped_column(String(64))
    last_received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookReceipt(IdMixin, Base):
    """A delivery already accepted, by its Standard Webhooks ``webhook-id`` (a replay of it is
    not a new event) or by its ``sha256=`` signature (a replay of it is refused)."""

    __tablename__ = "webhook_receipts"
    __table_args__ = (
        UniqueConstraint("source_id", "message_id"),
        Index("ix_webhook_receipts_source_id_received_at", "source_id", "received_at"),
    )

    source_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("webhook_sources.id", ondelete="CASCADE")
    )
    message_id: Mapped[str] = mapped_column(String(255))
    # Set once the event is written, in the same transaction as the receipt.
    event_id: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Approval(IdMixin, TimestampMixin, Base):
    """A pending human decision on a workflow step or a task's tool call."""

    __tablename__ = "approvals"
    __table_args__ = (
        project_index("approvals", "created_at"),
        Index("ix_approvals_status_expires_at", "status", "expires_at"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = project_ref()
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
    proposed_action: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Usernames besides the owner who may decide, as ",alice,bob," so a LIKE finds them.
    approvers: Mapped[str] = mapped_column(String(2000), default="")
    workflow_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    execution_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    step_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    task_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(150))
    feedback: Mapped[str | None] = mapped_column(Text)
    modified_action: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
