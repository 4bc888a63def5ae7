"""queue: the durable job queue and worker nodes

Revision ID: 0100
Revises: 0001
Create Date: 2026-11-22 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import taskgate.db.types

revision: str = "0100"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
UTC = taskgate.db.types.UTCDateTime(timezone=True)
QUEUED = "status = 'queued'"
LEASED = "status = 'leased'"
KEYED_LIVE = "concurrency_key IS NOT NULL AND status IN ('queued', 'leased')"
FINISHED = "finished_at IS NOT NULL"


def _partial(predicate: str) -> dict[str, sa.TextClause]:
    return {"postgresql_where": sa.text(predicate), "sqlite_where": sa.text(predicate)}


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("kinds", JSON, nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("capabilities", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("heartbeat_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodes")),
    )
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_nodes_heartbeat_at"), ["heartbeat_at"], unique=False)

    op.create_table(
        "queue_jobs",
        sa.Column("kind", sa.String(length=100), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("neg_priority", sa.Integer(), nullable=False),
        sa.Column("run_after", UTC, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=True),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", UTC, nullable=True),
        sa.Column("fencing_token", sa.BigInteger(), nullable=False),
        sa.Column("concurrency_key", sa.String(length=200), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("completions", sa.Integer(), nullable=False),
        sa.Column("started_at", UTC, nullable=True),
        sa.Column("finished_at", UTC, nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_jobs")),
    )
    with op.batch_alter_table("queue_jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_queue_jobs_claim", ["neg_priority", "run_after", "id"], **_partial(QUEUED)
        )
        batch_op.create_index(
            "ix_queue_jobs_concurrency_key", ["concurrency_key", "id"], **_partial(KEYED_LIVE)
        )
        batch_op.create_index("ix_queue_jobs_finished_at", ["finished_at"], **_partial(FINISHED))
        batch_op.create_index(
            "ix_queue_jobs_lease_expires_at", ["lease_expires_at"], **_partial(LEASED)
        )


def downgrade() -> None:
    with op.batch_alter_table("queue_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_queue_jobs_lease_expires_at")
        batch_op.drop_index("ix_queue_jobs_finished_at")
        batch_op.drop_index("ix_queue_jobs_concurrency_key")
        batch_op.drop_index("ix_queue_jobs_claim")
    op.drop_table("queue_jobs")
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_nodes_heartbeat_at"))
    op.drop_table("nodes")
