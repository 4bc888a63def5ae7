"""projects: every resource belongs to a project; existing rows move to their owner's default

Revision ID: 0900
Revises: 0100, 0200, 0400, 0600, 0800
Create Date: 2026-12-07 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import taskgate.db.types
from taskgate.clock import utcnow
from taskgate.ids import new_id

revision: str = "0900"
down_revision: str | Sequence[str] | None = ("0100", "0200", "0400", "0600", "0800")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> the columns after (project_id, owner_id) of its list indexes, once led by owner_id.
LISTED: dict[str, list[str]] = {
    "sessions": ["created_at"],
    "tasks": ["created_at", "status"],
    "runs": ["created_at"],
    "jobs": ["created_at"],
    "workflows": ["created_at", "updated_at", "name", "slug", "trigger_type"],
    "workflow_executions": ["created_at", "status"],
    "webhook_sources": ["created_at"],
    "approvals": ["created_at"],
    "schedules": ["created_at"],
    "subscriptions": ["is_active"],
    "destinations": ["created_at"],
}
# Tables whose old owner index had another shape.
OLD_INDEXES: dict[str, list[tuple[str, list[str]]]] = {
    "destinations": [("ix_destinations_owner_id", ["owner_id"])],
}
# Rows that may have no owner keep no project (system events, anonymous audit records).
OPTIONAL = {"events": "owner_id", "audit_records": "actor_id"}


def _old_indexes(table: str) -> list[tuple[str, list[str]]]:
    return OLD_INDEXES.get(
        table, [(f"ix_{table}_owner_id_{c}", ["owner_id", c]) for c in LISTED[table]]
    )


def _move_to_default_projects(table: str, owner: str) -> None:
    """Set ``project_id`` of every row of ``table`` to the default project of its ``owner``."""
    rows = sa.table(table, sa.column("project_id", sa.Uuid()), sa.column(owner, sa.Uuid()))
    projects = sa.table(
        "projects",
        sa.column("id", sa.Uuid()),
        sa.column("created_by", sa.Uuid()),
        sa.column("is_default", sa.Boolean()),
    )
    default = (
        sa.select(projects.c.id)
        .where(projects.c.created_by == rows.c[owner], projects.c.is_default.is_(True))
        .scalar_subquery()
    )
    op.execute(rows.update().values(project_id=default))


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("slug", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("team", sa.String(length=200), nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", taskgate.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", taskgate.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_projects_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("slug", name=op.f("uq_projects_slug")),
    )
    op.create_index(op.f("ix_projects_created_by"), "projects", ["created_by"], unique=False)
    op.create_table(
        "project_members",
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", taskgate.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", taskgate.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_project_members_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_project_members_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_members")),
        sa.UniqueConstraint(
            "project_id", "user_id", name=op.f("uq_project_members_project_id_user_id")
        ),
    )
    op.create_index(
        "ix_project_members_user_id_project_id",
        "project_members",
        ["user_id", "project_id"],
        unique=False,
    )
    _create_default_projects()

    for table, columns in LISTED.items():
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("project_id", sa.Uuid(), nullable=True))
        _move_to_default_projects(table, "owner_id")
        with op.batch_alter_table(table) as batch_op:
            batch_op.alter_column("project_id", existing_type=sa.Uuid(), nullable=False)
            batch_op.create_foreign_key(
                batch_op.f(f"fk_{table}_project_id_projects"),
                "projects",
                ["project_id"],
                ["id"],
                ondelete="RESTRICT",
            )
            for name, _ in _old_indexes(table):
                batch_op.drop_index(name)
            for column in columns:
                batch_op.create_index(
                    f"ix_{table}_project_id_owner_id_{column}",
                    ["project_id", "owner_id", column],
                    unique=False,
                )

    for table, owner in OPTIONAL.items():
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("project_id", sa.Uuid(), nullable=True))
        _move_to_default_projects(table, owner)
    with op.batch_alter_table("events") as batch_op:
        batch_op.drop_index("ix_events_owner_id_id")
        batch_op.create_index(
            "ix_events_project_id_owner_id_id", ["project_id", "owner_id", "id"], unique=False
        )
    with op.batch_alter_table("audit_records") as batch_op:
        batch_op.create_index(
            "ix_audit_records_project_id_created_at", ["project_id", "created_at"], unique=False
        )


def _create_default_projects() -> None:
    """One default project per existing user, owned by that user."""
    connection = op.get_bind()
    projects = sa.table(
        "projects",
        sa.column("id", sa.Uuid()),
        sa.column("slug", sa.String()),
        sa.column("name", sa.String()),
        sa.column("description", sa.Text()),
        sa.column("status", sa.String()),
        sa.column("is_default", sa.Boolean()),
        sa.column("created_by", sa.Uuid()),
        sa.column("created_at", taskgate.db.types.UTCDateTime(timezone=True)),
        sa.column("updated_at", taskgate.db.types.UTCDateTime(timezone=True)),
    )
    members = sa.table(
        "project_members",
        sa.column("id", sa.Uuid()),
        sa.column("project_id", sa.Uuid()),
        sa.column("user_id", sa.Uuid()),
        sa.column("role", sa.String()),
        sa.column("created_at", taskgate.db.types.UTCDateTime(timezone=True)),
        sa.column("updated_at", taskgate.db.types.UTCDateTime(timezone=True)),
    )
    users = sa.table("users", sa.column("id", sa.Uuid()), sa.column("username", sa.String()))
    now = utcnow()
    project_rows, member_rows = [], []
    for user_id, username in connection.execute(sa.select(users.c.id, users.c.username)):
        project_id = new_id()
        project_rows.append(
            {
                "id": project_id,
                "slug": f"default-{username}",
                "name": f"{username}'s project",
                "description": "",
                "status": "active",
                "is_default": True,
                "created_by": user_id,
                "created_at": now,
                "updated_at": now,
            }
        )
        member_rows.append(
            {
                "id": new_id(),
                "project_id": project_id,
                "user_id": user_id,
                "role": "owner",
                "created_at": now,
                "updated_at": now,
            }
        )
    if project_rows:
        connection.execute(projects.insert(), project_rows)
        connection.execute(members.insert(), member_rows)


def downgrade() -> None:
    with op.batch_alter_table("audit_records") as batch_op:
        batch_op.drop_index("ix_audit_records_project_id_created_at")
        batch_op.drop_column("project_id")
    with op.batch_alter_table("events") as batch_op:
        batch_op.drop_index("ix_events_project_id_owner_id_id")
        batch_op.create_index("ix_events_owner_id_id", ["owner_id", "id"], unique=False)
        batch_op.drop_column("project_id")
    for table, columns in LISTED.items():
        with op.batch_alter_table(table) as batch_op:
            for column in columns:
                batch_op.drop_index(f"ix_{table}_project_id_owner_id_{column}")
            for name, indexed in _old_indexes(table):
                batch_op.create_index(name, indexed, unique=False)
            batch_op.drop_constraint(f"fk_{table}_project_id_projects", type_="foreignkey")
            batch_op.drop_column("project_id")
    op.drop_index("ix_project_members_user_id_project_id", table_name="project_members")
    op.drop_table("project_members")
    op.drop_index(op.f("ix_projects_created_by"), table_name="projects")
    op.drop_table("projects")
