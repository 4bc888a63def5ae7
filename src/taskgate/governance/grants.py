"""A user's effective grants: what its role bindings, direct and through its groups, and the
access rules that name it add up to, read in one go and kept with the user's cached profile.

They are resolved from the current bindings and memberships whenever the profile is
(re)loaded, and every governance change drops the cached profiles of every process
(taskgate.governance.changes), so a change holds from the next request on.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.auth.principal import Principal
from taskgate.governance.roles import INSTANCE_ADMIN, permissions_of
from taskgate.governance.rules import Rule
from taskgate.models import AccessRule, GovernanceState, Group, GroupMember, Project, RoleBinding

Permissions = tuple[frozenset[str], frozenset[str]]


@dataclass(frozen=True)
class GroupRef:
    id: uuid.UUID
    slug: str
    name: str


@dataclass(frozen=True, eq=False)
class Grants:
    """Compared by identity: a reload makes a new one."""

    user_id: uuid.UUID
    system_roles: frozenset[str] = frozenset()
    project_roles: Mapping[uuid.UUID, frozenset[str]] = field(default_factory=dict)
    groups: tuple[GroupRef, ...] = ()
    # Every disabled project of the instance (few): their data is read-only.
    disabled_projects: frozenset[uuid.UUID] = frozenset()
    # The rules naming this user, one of its groups, or any project.
    rules: tuple[Rule, ...] = ()
    generation: int = 0
    _per_project: dict[uuid.UUID | None, Permissions] = field(
        default_factory=dict, init=False, repr=False
    )
    _subjects: dict[uuid.UUID | None, dict[str, Any]] = field(
        default_factory=dict, init=False, repr=False
    )

    @property
    def is_admin(self) -> bool:
        """The instance administrator (system-scope ``admin``)."""
        return INSTANCE_ADMIN in self.system_roles

    @property
    def group_ids(self) -> list[uuid.UUID]:
        return [group.id for group in self.groups]

    def sees(self, project_id: uuid.UUID) -> bool:
        """Any system-scope role sees every project; otherwise a role in it does."""
        return bool(self.system_roles) or project_id in self.project_roles

    def roles_in(self, project_id: uuid.UUID) -> frozenset[str]:
        return self.project_roles.get(project_id, frozenset())

    def permissions(self, project_id: uuid.UUID | None) -> Permissions:
        """(on anything, on what the user owns) in ``project_id``; None: at system scope."""
        found = self._per_project.get(project_id)
        if found is None:
            anything, owned = permissions_of(self.system_roles, system=True)
            if project_id is not None:
                more, more_owned = permissions_of(self.roles_in(project_id))
                anything |= more
                owned = (owned | more_owned) - anything
            found = self._per_project[project_id] = (anything, owned)
        return found

    def subject(self, project_id: uuid.UUID | None) -> dict[str, Any]:
        """Who a decision was made for, as audit records carry it."""
        found = self._subjects.get(project_id)
        if found is None:
            names = sorted(self.roles_in(project_id)) if project_id is not None else []
            names += [f"system:{role}" for role in sorted(self.system_roles)]
            found = self._subjects[project_id] = {
                "user_id": str(self.user_id),
                "group_ids": [str(g) for g in self.group_ids],
                "role_names": names,
                "scope": f"project:{project_id}" if project_id is not None else "system",
            }
        return found


def grants_of(principal: Principal) -> Grants | None:
    """The principal's grants (``auth/`` knows them only as a protocol); None for a principal
    the runtime built by hand."""
    grants = principal.grants
    if grants is None or isinstance(grants, Grants):
        return grants
    raise TypeError(f"grants of an unknown kind: {type(grants).__name__}")


async def current_generation(session: AsyncSession) -> int:
    found = await session.scalar(select(GovernanceState.generation).where(GovernanceState.id == 1))
    return int(found or 0)


async def load_grants(session: AsyncSession, user_id: uuid.UUID) -> Grants:
    """The user's grants as the database holds them now. The generation is read first, so
    grants are never newer than the generation they are filed under is old."""
    generation = await current_generation(session)
    groups = [
        GroupRef(*row)
        for row in await session.execute(
            select(Group.id, Group.slug, Group.name)
            .join(GroupMember, GroupMember.group_id == Group.id)
            .where(GroupMember.user_id == user_id, Group.is_active.is_(True))
            .order_by(Group.slug)
        )
    ]
    group_ids = [group.id for group in groups]
    held = (RoleBinding.subject_type == "user") & (RoleBinding.subject_id == user_id)
    if group_ids:
        held = held | (RoleBinding.subject_type == "group") & RoleBinding.subject_id.in_(group_ids)
    system: set[str] = set()
    projects: dict[uuid.UUID, set[str]] = {}
    for project_id, role in await session.execute(
        select(RoleBinding.project_id, RoleBinding.role).where(held)
    ):
        if project_id is None:
            system.add(role)
        else:
            projects.setdefault(project_id, set()).add(role)
    disabled = await session.scalars(select(Project.id).where(Project.status == "disabled"))
    named = [
        (AccessRule.subject_type == "user") & (AccessRule.subject_id == user_id),
        AccessRule.subject_type == "project",
    ]
    if group_ids:
        named.append((AccessRule.subject_type == "group") & AccessRule.subject_id.in_(group_ids))
    rules = await session.scalars(select(AccessRule).where(or_(*named)))
    return Grants(
        user_id,
        frozenset(system),
        {project: frozenset(roles) for project, roles in projects.items()},
        tuple(groups),
        frozenset(disabled),
        tuple(Rule.of(rule) for rule in rules),
        generation,
    )
