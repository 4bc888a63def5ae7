"""The API contract of groups, roles, role bindings and access rules."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from taskgate.governance.roles import ROLE_NAMES, Role
from taskgate.models import AccessRule, Group, GroupMember, RoleBinding

RoleName = Literal["owner", "admin", "operator", "member", "viewer"]
assert set(RoleName.__args__) == set(ROLE_NAMES)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class GroupFilters:
    """What ``GET /api/v1/groups`` narrows the groups to."""

    is_active: bool | None = None
    search: str | None = None


@dataclass(frozen=True)
class BindingFilters:
    """What ``GET /api/v1/role-bindings`` lists: one scope's bindings, narrowed."""

    scope_type: str = "project"
    scope_id: uuid.UUID | None = None
    subject_type: str | None = None
    subject_id: uuid.UUID | None = None
    role: str | None = None


@dataclass(frozen=True)
class RuleFilters:
    """What ``GET /api/v1/access-rules`` narrows the rules to."""

    subject_type: str | None = None
    subject_id: uuid.UUID | None = None
    effect: str | None = None


class GroupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    slug: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        pattern=r"^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$",
        description="Lowercase letters, digits and dashes; derived from `name` when absent.",
    )
    description: str = Field(default="", max_length=10_000)
    external_source: str | None = Field(default=None, max_length=100)
    external_id: str | None = Field(default=None, max_length=200)


class GroupUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)


class GroupOut(BaseModel):
    id: uuid.UUID
    slug: str
    name: str
    description: str
    is_active: bool
    managed_by: str = Field(description='"local": managed through this API.')
    external_source: str | None
    external_id: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, group: Group) -> GroupOut:
        return cls(
            id=group.id,
            slug=group.slug,
            name=group.name,
            description=group.description,
            is_active=group.is_active,
            managed_by=group.managed_by,
            external_source=group.external_source,
            external_id=group.external_id,
            created_at=group.created_at,
            updated_at=group.updated_at,
        )


class MemberAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: uuid.UUID


class MemberOut(BaseModel):
    group_id: uuid.UUID
    user_id: uuid.UUID
    username: str
    added_by: uuid.UUID | None = Field(description="Who added the user.")
    created_at: datetime = Field(description="When the user was added.")

    @classmethod
    def of(cls, member: GroupMember, username: str) -> MemberOut:
        return cls(
            group_id=member.group_id,
            user_id=member.user_id,
            username=username,
            added_by=member.added_by,
            created_at=member.created_at,
        )


class RoleOut(BaseModel):
    name: RoleName
    description: str
    permissions: list[str] = Field(description="Granted on every resource of the scope.")
    owned_permissions: list[str] = Field(
        description="Granted only on the resources the holder created."
    )
    system_permissions: list[str] | None = Field(
        description="What the role grants at system scope, in every project and on instance "
        "resources; null: it cannot be bound at system scope."
    )

    @classmethod
    def of(cls, role: Role, system: Role | None) -> RoleOut:
        return cls(
            name=role.name,
            description=role.description,
            permissions=sorted(role.permissions),
            owned_permissions=sorted(role.owned),
            system_permissions=sorted(system.permissions) if system is not None else None,
        )


class RoleList(BaseModel):
    results: list[RoleOut]


class BindingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject_type: Literal["user", "group"]
    subject_id: uuid.UUID
    role: RoleName
    scope_type: Literal["system", "project"] = "project"
    scope_id: uuid.UUID | None = Field(
        default=None,
        description="The project, for scope_type project (default: the request's project); "
        "none for system.",
    )


class BindingOut(BaseModel):
    id: uuid.UUID
    subject_type: Literal["user", "group"]
    subject_id: uuid.UUID
    role: RoleName
    scope_type: Literal["system", "project"]
    scope_id: uuid.UUID | None
    created_by: uuid.UUID | None
    created_at: datetime

    @classmethod
    def of(cls, binding: RoleBinding) -> BindingOut:
        return cls(
            id=binding.id,
            subject_type=binding.subject_type,
            subject_id=binding.subject_id,
            role=binding.role,
            scope_type="system" if binding.project_id is None else "project",
            scope_id=binding.project_id,
            created_by=binding.created_by,
            created_at=binding.created_at,
        )


_RULE_DOC = (
    "Evaluated after roles: when rules apply, those of the highest priority decide and deny "
    "wins among them; when none applies, the roles decide (default deny)."
)


class RuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"description": _RULE_DOC})

    subject_type: Literal["user", "group", "project"]
    subject_id: uuid.UUID
    action: str = Field(min_length=1, max_length=64, description="A verb, or '*'.")
    resource_type: str = Field(
        min_length=1, max_length=64, description="A resource (task, workflow, ...), or '*'."
    )
    resource_pattern: str = Field(
        default="*", min_length=1, max_length=200, description="A glob over resource ids."
    )
    effect: Literal["allow", "deny"]
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    conditions: dict[str, Any] = Field(
        default_factory=dict,
        description="Optional: project_id, via (api_key or token), owner (self or other).",
    )


class RuleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str | None = Field(default=None, min_length=1, max_length=64)
    resource_type: str | None = Field(default=None, min_length=1, max_length=64)
    resource_pattern: str | None = Field(default=None, min_length=1, max_length=200)
    effect: Literal["allow", "deny"] | None = None
    priority: int | None = Field(default=None, ge=-1_000_000, le=1_000_000)
    conditions: dict[str, Any] | None = None


class RuleOut(BaseModel):
    id: uuid.UUID
    subject_type: Literal["user", "group", "project"]
    subject_id: uuid.UUID
    action: str
    resource_type: str
    resource_pattern: str
    effect: Literal["allow", "deny"]
    priority: int
    conditions: dict[str, Any]
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, rule: AccessRule) -> RuleOut:
        return cls(
            id=rule.id,
            subject_type=rule.subject_type,
            subject_id=rule.subject_id,
            action=rule.action,
            resource_type=rule.resource_type,
            resource_pattern=rule.resource_pattern,
            effect=rule.effect,
            priority=rule.priority,
            conditions=rule.conditions or {},
            created_by=rule.created_by,
            created_at=rule.created_at,
            updated_at=rule.updated_at,
        )
