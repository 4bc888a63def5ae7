"""roles: groups, role bindings, access rules; project members and admins become bindings

Revision ID: 1100
Revises: 1000
Create Date: 2026-12-08 12:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import taskgate.db.types
from taskgate.clock import utcnow
from taskgate.ids import new_id

revision: str = "1100"
down_revision: str | Sequence[str] | None = "1000"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = taskgate.db.types.UTCDateTime(timezone=True)
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_PROJECT_SCOPE = sa.text("project_id IS NOT NULL")
_SYSTEM_SCOPE = sa.text("project_id IS NULL")


def _bindings() -> sa.TableClause:
    return sa.table(
        "role_bindings",
        sa.column("id", sa.Uuid()),
        sa.column("subject_type", sa.String()),
        sa.column("subject_id", sa.Uuid()),
        sa.column("role", sa.String()),
        sa.column("project_id", sa.Uuid()),
        sa.column("created_at", _TIME),
    )


def _members() -> sa.TableClause:
    return sa.table(
        "project_members",
        sa.column("id", sa.Uuid()),
        sa.column("project_id", sa.Uuid()),
        sa.column("user_id", sa.Uuid()),
        sa.column("role", sa.String()),
        sa.column("created_at", _TIME),
        sa.column("updated_at", _TIME),
    )


def _create_tables() -> None:
    op.create_table(
        "groups",
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("managed_by", sa.String(length=16), nullable=False),
        sa.Column("external_source", sa.String(length=100), nullable=True),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name="fk_groups_created_by_users", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_groups"),
        sa.UniqueConstraint("slug", name="uq_groups_slug"),
        sa.UniqueConstraint(
            "external_source", "external_id", name="uq_groups_external_source_external_id"
        ),
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("added_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["groups.id"], name="fk_group_members_group_id_groups", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_group_members_user_id_users", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["added_by"],
            ["users.id"],
            name="fk_group_members_added_by_users",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_group_members"),
        sa.UniqueConstraint("group_id", "user_id", name="uq_group_members_group_id_user_id"),
    )
    op.create_index("ix_group_members_user_id_group_id", "group_members", ["user_id", "group_id"])
    op.create_table(
        "role_bindings",
        sa.Column("subject_type", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name="fk_role_bindings_project_id_projects",
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name="fk_role_bindings_created_by_users",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_role_bindings"),
    )
    op.create_index(
        "ix_role_bindings_project_binding",
        "role_bindings",
        ["project_id", "subject_type", "subject_id", "role"],
        unique=True,
        postgresql_where=_PROJECT_SCOPE,
        sqlite_where=_PROJECT_SCOPE,
    )
    op.create_index(
        "ix_role_bindings_system_binding",
        "role_bindings",
        ["subject_type", "subject_id", "role"],
        unique=True,
        postgresql_where=_SYSTEM_SCOPE,
        sqlite_where=_SYSTEM_SCOPE,
    )
    op.create_index("ix_role_bindings_subject_id", "role_bindings", ["subject_id"])
    op.create_table(
        "access_rules",
        sa.Column("subject_type", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("resource_pattern", sa.String(length=200), nullable=False),
        sa.Column("effect", sa.String(length=8), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("conditions", _JSON, nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name="fk_access_rules_created_by_users",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_access_rules"),
    )
    op.create_index(
        "ix_access_rules_subject_type_subject_id", "access_rules", ["subject_type", "subject_id"]
    )
    op.create_table(
        "governance_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_governance_state"),
    )


def _bind_members_and_admins() -> None:
    """Every project member becomes a role binding of its role (owner or member), and every
    administrator (``users.is_admin``) a system-scope ``admin`` binding."""
    connection = op.get_bind()
    members = _members()
    users = sa.table("users", sa.column("id", sa.Uuid()), sa.column("is_admin", sa.Boolean()))
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for project_id, user_id, role in connection.execute(
        sa.select(members.c.project_id, members.c.user_id, members.c.role)
    ):
        rows.append(_binding(user_id, "owner" if role == "owner" else "member", project_id, now))
    for (user_id,) in connection.execute(sa.select(users.c.id).where(users.c.is_admin.is_(True))):
        rows.append(_binding(user_id, "admin", None, now))
    if rows:
        connection.execute(_bindings().insert(), rows)
    state = sa.table("governance_state", sa.column("id"), sa.column("generation"))
    connection.execute(state.insert().values(id=1, generation=1))


def _binding(user_id: Any, role: str, project_id: Any, now: Any) -> dict[str, Any]:
    return {
        "id": new_id(),
        "subject_type": "user",
        "subject_id": user_id,
        "role": role,
        "project_id": project_id,
        "created_at": now,
    }


def upgrade() -> None:
    _create_tables()
    _bind_members_and_admins()
    op.drop_index("ix_project_members_user_id_project_id", table_name="project_members")
    op.drop_table("project_members")
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.add_column(sa.Column("project_id", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            "fk_api_keys_project_id_projects",
            "projects",
            ["project_id"],
            ["id"],
            ondelete="RESTRICT",
        )
    with op.batch_alter_table("audit_records") as batch_op:
        batch_op.add_column(sa.Column("subject", _JSON, nullable=True))
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.create_index("ix_tasks_project_id_created_at", ["project_id", "created_at"])


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.drop_index("ix_tasks_project_id_created_at")
    with op.batch_alter_table("audit_records") as batch_op:
        batch_op.drop_column("subject")
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.drop_constraint("fk_api_keys_project_id_projects", type_="foreignkey")
        batch_op.drop_column("project_id")
    op.create_table(
        "project_members",
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name="fk_project_members_project_id_projects",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_project_members_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_project_members"),
        sa.UniqueConstraint("project_id", "user_id", name="uq_project_members_project_id_user_id"),
    )
    op.create_index(
        "ix_project_members_user_id_project_id", "project_members", ["user_id", "project_id"]
    )
    _members_from_bindings()
    op.drop_table("governance_state")
    op.drop_index("ix_access_rules_subject_type_subject_id", table_name="access_rules")
    op.drop_table("access_rules")
    op.drop_index("ix_role_bindings_subject_id", table_name="role_bindings")
    op.drop_index("ix_role_bindings_system_binding", table_name="role_bindings")
    op.drop_index("ix_role_bindings_project_binding", table_name="role_bindings")
    op.drop_table("role_bindings")
    op.drop_index("ix_group_members_user_id_group_id", table_name="group_members")
    op.drop_table("group_members")
    op.drop_table("groups")


def _members_from_bindings() -> None:
    """A user's project bindings become its membership: owner if it held owner, else member
    (what groups granted is lost: the old schema had no groups)."""
    connection = op.get_bind()
    bindings = _bindings()
    held: dict[tuple[Any, Any], str] = {}
    for project_id, user_id, role in connection.execute(
        sa.select(bindings.c.project_id, bindings.c.subject_id, bindings.c.role).where(
            bindings.c.subject_type == "user", bindings.c.project_id.is_not(None)
        )
    ):
        key = (project_id, user_id)
        held[key] = "owner" if role == "owner" or held.get(key) == "owner" else "member"
    now = utcnow()
    rows = [
        {
            "id": new_id(),
            "project_id": project_id,
            "user_id": user_id,
            "role": role,
            "created_at": now,
            "updated_at": now,
        }
        for (project_id, user_id), role in held.items()
    ]
    if rows:
        connection.execute(_members().insert(), rows)
