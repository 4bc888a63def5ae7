"""webhook sources: an index on slug, for inbound requests addressed by slug

Revision ID: 0800
Revises: 0700
Create Date: 2026-12-07 19:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0800"
down_revision: str | Sequence[str] | None = "0700"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # POST /api/v1/webhooks/{slug} looks the slug up across owners: the (owner_id, slug)
    # unique constraint cannot serve that.
    with op.batch_alter_table("webhook_sources", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_sources_slug", ["slug"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_sources", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_sources_slug")
