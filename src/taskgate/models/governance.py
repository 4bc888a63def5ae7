"""Projects (the workspaces every resource belongs to) and who belongs to them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from taskgate.db.base import Base, IdMixin, TimestampMixin


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


class ProjectMember(IdMixin, TimestampMixin, Base):
    """A user's place in a project. ``role`` is ``owner`` or ``member`` for now; role
    bindings will take over from it."""

    __tablename__ = "project_members"
    __table_args__ = (
        UniqueConstraint("project_id", "user_id"),
        Index("ix_project_members_user_id_project_id", "user_id", "project_id"),
    )

    project_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("projects.id", ondelete="CASCADE")
    )
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16), default="member")


def project_index(table: str, column: str) -> Index:
    """A resource's list index: its project first, then its owner, then the order or filter."""
    return Index(f"ix_{table}_project_id_owner_id_{column}", "project_id", "owner_id", column)
