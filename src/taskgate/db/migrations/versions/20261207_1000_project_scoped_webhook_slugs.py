"""webhook-source slugs unique per project

Revision ID: 1000
Revises: 0900
Create Date: 2026-12-07 20:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "1000"
down_revision: str | Sequence[str] | None = "0900"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A slug names a source within its project now (every existing slug still is unique
    # there: each owner's sources all went to that owner's default project). The slug index
    # stays: POST /api/v1/webhooks/{slug} looks the slug up across projects.
    # SQLite rebuilds the table (batch mode); PostgreSQL alters it in place.
    with op.batch_alter_table("webhook_sources", schema=None) as batch_op:
        batch_op.drop_constraint("uq_webhook_sources_owner_id_slug", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_webhook_sources_project_id_slug"), ["project_id", "slug"]
        )


def downgrade() -> None:
    # Fails, as it must, once one owner has a slug in two projects.
    with op.batch_alter_table("webhook_sources", schema=None) as batch_op:
        batch_op.drop_constraint("uq_webhook_sources_project_id_slug", type_="unique")
        batch_op.create_unique_constraint("uq_webhook_sources_owner_id_slug", ["owner_id", "slug"])
