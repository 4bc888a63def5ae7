"""Tasks and what running them leaves behind: chat sessions, runs, run logs and jobs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from taskgate.clock import utcnow
from taskgate.db.base import Base, IdMixin, TimestampMixin
from taskgate.db.types import JSONType, UTCDateTime
from taskgate.models.governance import project_index, project_ref


class ChatSession(IdMixin, TimestampMixin, Base):
    """A conversation: the tasks submitted in it share its context and history."""

    __tablename__ = "sessions"
    __table_args__ = (project_index("sessions", "created_at"),)

    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = project_ref()
    title: Mapped[str | None] = mapped_column(String(200))
    context: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class Task(IdMixin, TimestampMixin, Base):
    __tablename__ = "tasks"
    __table_args__ = (
        project_index("tasks", "created_at"),
        project_index("tasks", "status"),
        Index("ix_tasks_session_id_created_at", "session_id", "created_at"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = project_ref()
    session_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("sessions.id", ondelete="SET NULL")
    )
    parent_task_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("tasks.id", ondelete="SET NULL"), index=True
    )
    # No foreign key: runs already point at tasks, and a cycle would break table ordering.
    parent_run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(20))
    query: Mapped[str | None] = mapped_column(Text)
    # {"script": {"language", "content"}} or {"commands": [...]}; empty for text tasks.
    input: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    attachments: Mapped[list[str]] = mapped_column(JSONType, default=list)
    acceptance_criteria: Mapped[list[str]] = mapped_column(JSONType, default=list)
    context: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    labels: Mapped[list[str]] = mapped_column(JSONType, default=list)
    mode: Mapped[str | None] = mapped_column(String(32))
    model_tier: Mapped[str | None] = mapped_column(String(32))
    model_override: Mapped[str | None] = mapped_column(String(200))
    provider_override: Mapped[str | None] = mapped_column(String(64))
    max_iterations: Mapped[int | None] = mapped_column(Integer)
    timeout_seconds: Mapped[int] = mapped_column(Integer)
    priority: Mapped[int] = mapped_column(Integer, default=0)

    result: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    model_used: Mapped[str | None] = mapped_column(String(200))
    provider: Mapped[str | None] = mapped_column(String(64))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The queue job currently carrying this task, so cancel and pause can reach it.
    queue_job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)

    pause_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pause_reason: Mapped[str | None] = mapped_column(String(500))
    paused_by: Mapped[str | None] = mapped_column(String(150))
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_reason: Mapped[str | None] = mapped_column(String(500))
    cancelled_by: Mapped[str | None] = mapped_column(String(150))

    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Run(IdMixin, TimestampMixin, Base):
    """One attempt at a task (or a sub-agent's, or one a client reports on its own)."""

    __tablename__ = "runs"
    __table_args__ = (
        project_index("runs", "created_at"),
        Index("ix_runs_task_id_attempt", "task_id", "attempt"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = project_ref()
    task_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("tasks.id", ondelete="CASCADE")
    )
    session_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    parent_run_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("runs.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(20))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    node_id: Mapped[str | None] = mapped_column(String(200))
    transcript: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    usage: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RunLog(IdMixin, Base):
    __tablename__ = "run_logs"
    __table_args__ = (Index("ix_run_logs_run_id_created_at", "run_id", "created_at"),)

    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("runs.id", ondelete="CASCADE"))
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TaskJob(IdMixin, TimestampMixin, Base):
    """The user's view of one piece of sandbox or model work a task dispatched."""

    __tablename__ = "jobs"
    __table_args__ = (
        project_index("jobs", "created_at"),
        Index("ix_jobs_task_id_created_at", "task_id", "created_at"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID] = project_ref()
    task_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("tasks.id", ondelete="CASCADE"))
    run_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("runs.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(20))
    input: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    output_excerpt: Mapped[str | None] = mapped_column(Text)
    output_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    output_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    output_path: Mapped[str | None] = mapped_column(String(1000))
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    node_id: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
