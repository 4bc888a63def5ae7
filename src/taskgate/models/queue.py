"""The durable job queue and the worker nodes that drain it (internal; no API resource)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from taskgate.db.base import Base, IdMixin, TimestampMixin
from taskgate.db.types import JSONType, UTCDateTime

# Partial-index predicates, spelled once so the model and the migration cannot drift.
QUEUED = text("status = 'queued'")
LEASED = text("status = 'leased'")
KEYED_LIVE = text("concurrency_key IS NOT NULL AND status IN ('queued', 'leased')")
FINISHED = text("finished_at IS NOT NULL")


class QueueJob(IdMixin, TimestampMixin, Base):
    """One unit of background work of any kind; the id orders jobs by enqueue time."""

    __tablename__ = "queue_jobs"
    __table_args__ = (
        # The claim reads this in order; only live rows are in it, so finished rows never slow
        # a claim down.
        Index(
            "ix_queue_jobs_claim",
            "neg_priority",
            "run_after",
            "id",
            postgresql_where=QUEUED,
            sqlite_where=QUEUED,
        ),
        Index(
            "ix_queue_jobs_lease_expires_at",
            "lease_expires_at",
            postgresql_where=LEASED,
            sqlite_where=LEASED,
        ),
        Index(
            "ix_queue_jobs_concurrency_key",
            "concurrency_key",
            "id",
            postgresql_where=KEYED_LIVE,
            sqlite_where=KEYED_LIVE,
        ),
        Index(
            "ix_queue_jobs_finished_at",
            "finished_at",
            postgresql_where=FINISHED,
            sqlite_where=FINISHED,
        ),
    )

    kind: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    # Always -priority. Claims take the highest priority first, then the earliest run_after:
    # with this column one all-ascending index serves that order (a DESC index key is an
    # expression index, which the migration check cannot reflect on SQLite).
    neg_priority: Mapped[int] = mapped_column(Integer, default=0)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # NULL: the worker's configured default applies.
    max_attempts: Mapped[int | None] = mapped_column(Integer)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Increases at every claim; a worker holding an older token may not write an outcome.
    fencing_token: Mapped[int] = mapped_column(BigInteger, default=0)
    concurrency_key: Mapped[str | None] = mapped_column(String(200))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str | None] = mapped_column(Text)
    # How many times an outcome was written: exactly-once means never more than 1.
    completions: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Node(Base):
    """A worker process: registered at start, heartbeating while alive."""

    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    kinds: Mapped[list[str]] = mapped_column(JSONType, default=list)
    concurrency: Mapped[int] = mapped_column(Integer)
    capabilities: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="active")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
