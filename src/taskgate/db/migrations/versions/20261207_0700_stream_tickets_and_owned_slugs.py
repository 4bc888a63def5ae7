"""stream tickets; webhook-source slugs unique per owner

Revision ID: 0700
Revises: 0500
Create Date: 2026-12-07 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import taskgate.db.types

revision: str = "0700"
down_revision: str | Sequence[str] | None = "0500"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stream_tickets",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("api_key_id", sa.Uuid(), nullable=True),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("auth_version", sa.Integer(), nullable=True),
        sa.Column("created_at", taskgate.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", taskgate.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_stream_tickets_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_stream_tickets_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stream_tickets")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_stream_tickets_token_hash")),
    )
    with op.batch_alter_table("stream_tickets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_stream_tickets_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_stream_tickets_user_id"), ["user_id"], unique=False)

    # Slugs were unique across all users, which told anyone whose names were taken; they are
    # unique per owner now (every existing slug still is), and the inbound URL names the
    # source by id. SQLite rebuilds the table (batch mode); PostgreSQL alters it in place.
    with op.batch_alter_table("webhook_sources", schema=None) as batch_op:
        batch_op.drop_constraint("uq_webhook_sources_slug", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_webhook_sources_owner_id_slug"), ["owner_id", "slug"]
        )


def downgrade() -> None:
    # Fails, as it must, once two owners share a slug.
    with op.batch_alter_table("webhook_sources", schema=None) as batch_op:
        batch_op.drop_constraint("uq_webhook_sources_owner_id_slug", type_="unique")
        batch_op.create_unique_constraint("uq_webhook_sources_slug", ["slug"])

    with op.batch_alter_table("stream_tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stream_tickets_user_id"))
        batch_op.drop_index(batch_op.f("ix_stream_tickets_expires_at"))

    op.drop_table("stream_tickets")
