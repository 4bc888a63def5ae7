"""Projects (the workspaces every resource belongs to), groups, role bindings and access
rules: who may do what in them."""

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
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from taskgate.clock import utcnow
from taskgate.db.base import Base, IdMixin, TimestampMixin
from taskgate.db.types import JSONType, UTCDateTime


def project_ref(**kwargs: Any) -> Mapped[uuid.UUID]:
    """The ``project_id`` column of a resource: projects are disabled, never deleted."""
    return mapped_column(Uuid, ForeignKey("projects.id", ondelete="RESTRICT"), **kwargs)


class Project(IdMixin, TimestampMixin, Base):
    __tablename__ = "projects"

    # "default-<username>" for a user's default project, so as long as a username can be.
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # "active" or "disabled"; a disabled project keeps its data readable and refuses writes.
    status: Mapped[str] = mapped_column(String(16), default="active")
    team: Mapped[str | None] = mapped_column(String(200))
    # The project a user's requests go to when they name none (one per user).
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL"), index=True
    )


class Group(IdMixin, TimestampMixin, Base):
    """A set of users, managed by instance administrators (or, later, synced from a
    directory). Groups hold users only, so membership never forms a cycle."""

    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("external_source", "external_id"),)

    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # A disabled group keeps its members and bindings, which then grant nothing.
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # "local" (managed through the API); a directory sync would name itself here.
    managed_by: Mapped[str] = mapped_column(String(16), default="local")
    external_source: Mapped[str | None] = mapped_column(String(100))
    external_id: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL")
    )


class GroupMember(IdMixin, Base):
    """A user in a group: who added it and when (removals are in the audit log)."""

    __tablename__ = "group_members"
    __table_args__ = (
        UniqueConstraint("group_id", "user_id"),
        Index("ix_group_members_user_id_group_id", "user_id", "group_id"),
    )

    group_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("groups.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    added_by: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


_PROJECT_SCOPE = text("project_id IS NOT NULL")
_SYSTEM_SCOPE = text("project_id IS NULL")


class RoleBinding(IdMixin, Base):
    """A role held by a user or a group, in one project or (``project_id`` null) at system
    scope. The one source of who may do what; see taskgate.governance.roles for the roles."""

    __tablename__ = "role_bindings"
    __table_args__ = (
        Index(
            "ix_role_bindings_project_binding",
            "project_id",
            "subject_type",
            "subject_id",
            "role",
            unique=True,
            postgresql_where=_PROJECT_SCOPE,
            sqlite_where=_PROJECT_SCOPE,
        ),
        Index(
            "ix_role_bindings_system_binding",
            "subject_type",
            "subject_id",
            "role",
            unique=True,
            postgresql_where=_SYSTEM_SCOPE,
            sqlite_where=_SYSTEM_SCOPE,
        ),
        Index("ix_role_bindings_subject_id", "subject_id"),
    )

    subject_type: Mapped[str] = mapped_column(String(16))  # "user" or "group"
    # A user's or a group's id (no foreign key: it names either; neither is ever deleted).
    subject_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    role: Mapped[str] = mapped_column(String(16))
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("projects.id", ondelete="RESTRICT")
    )
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def scope_type(self) -> str:
        return "system" if self.project_id is None else "project"


class AccessRule(IdMixin, TimestampMixin, Base):
    """An allow or deny applied after roles (taskgate.governance.rules)."""

    __tablename__ = "access_rules"
    __table_args__ = (
        Index("ix_access_rules_subject_type_subject_id", "subject_type", "subject_id"),
    )

    subject_type: Mapped[str] = mapped_column(String(16))  # "user", "group" or "project"
    subject_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    action: Mapped[str] = mapped_column(String(64))  # a verb, or "*"
    resource_type: Mapped[str] = mapped_column(String(64))  # a resource, or "*"
    resource_pattern: Mapped[str] = mapped_column(String(200), default="*")
    effect: Mapped[str] = mapped_column(String(8))  # "allow" or "deny"
    priority: Mapped[int] = mapped_column(Integer, default=0)
    conditions: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL")
    )


class GovernanceState(Base):
    """One row: a counter bumped in the transaction of every change to who may do what, so
    each process can tell whether the grants it caches are current
    (taskgate.governance.changes)."""

    __tablename__ = "governance_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)


def project_index(table: str, column: str) -> Index:
    """A resource's list index: its project first, then its owner, then the order or filter."""
    return Index(f"ix_{table}_project_id_owner_id_{column}", "project_id", "owner_id", column)
