"""Role-binding use cases: who holds which role, where.

- Project scope: whoever holds ``role_binding:create`` / ``:delete`` in the project (its
  admins and owners) manages its bindings; system scope: the instance administrators.
- Nothing widens its own access: a binding may carry only a role whose permissions the
  caller holds in that scope already (a project admin cannot make anyone, itself included,
  an owner), and removing one asks the same.
- A project keeps at least one owner binding, and the instance at least one administrator;
  nobody removes its own administrator binding.
- The system-scope ``admin`` binding of a user is the instance administrator; ``users.
  is_admin`` mirrors it (``set_instance_admin`` keeps the two together), so it is bound to
  users only.
"""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.audit.service import audit
from taskgate.auth.principal import Principal
from taskgate.errors import Conflict, Forbidden, NotFound, ValidationFailed
from taskgate.governance import access_repository as repo
from taskgate.governance.access import authorize, authorize_system, denied, may
from taskgate.governance.access_schemas import BindingCreate, BindingFilters, BindingOut
from taskgate.governance.changes import changed
from taskgate.governance.grants import grants_of
from taskgate.governance.roles import INSTANCE_ADMIN, ROLES, SYSTEM_ROLES
from taskgate.http.pagination import Page, PageParams, page_of
from taskgate.models import Group, Project, RoleBinding, User


async def list_bindings(
    session: AsyncSession, principal: Principal, filters: BindingFilters, page: PageParams
) -> Page[BindingOut]:
    """The bindings at system scope, or of one project (default: the request's)."""
    if filters.scope_type == "system":
        authorize_system(principal, "role_binding:read")
        project_id = None
    else:
        project_id = authorize(principal, "role_binding:read", project_id=filters.scope_id)
    listing = repo.bindings_listing(
        project_id,
        subject_type=filters.subject_type,
        subject_id=filters.subject_id,
        role=filters.role,
    )
    return await page_of(session, listing, page, BindingOut.of)


def _check_may_grant(principal: Principal, role: str, project_id: uuid.UUID | None) -> None:
    """403 unless ``principal`` holds every permission ``role`` grants in the scope."""
    if principal.is_admin:
        return
    grants = grants_of(principal)
    granted = ROLES[role]
    missing = set(granted.permissions | granted.owned)
    if grants is not None and project_id is not None:
        anything, owned = grants.permissions(project_id)
        missing -= anything
        missing -= owned & granted.owned
    if missing:
        error = Forbidden(
            f"Not allowed: the role {role} includes permissions you do not hold here "
            f"({', '.join(sorted(missing)[:5])})."
        )
        raise denied(error, principal, "role_binding:create", project_id, None)


async def _check_subject(session: AsyncSession, subject_type: str, subject_id: uuid.UUID) -> None:
    found = await session.get(User if subject_type == "user" else Group, subject_id)
    if found is None:
        raise ValidationFailed.field("subject_id", f"no such {subject_type}")


async def create_binding(
    session: AsyncSession, principal: Principal, body: BindingCreate
) -> RoleBinding:
    project_id: uuid.UUID | None
    if body.scope_type == "system":
        if body.scope_id is not None:
            raise ValidationFailed.field("scope_id", "must be absent at system scope")
        if body.role not in SYSTEM_ROLES:
            allowed = ", ".join(SYSTEM_ROLES)
            raise ValidationFailed.field("role", f"at system scope, use one of {allowed}")
        if body.role == INSTANCE_ADMIN and body.subject_type != "user":
            raise ValidationFailed.field(
                "subject_type", "the instance administrator role is bound to users only"
            )
        authorize_system(principal, "role_binding:create")
        project_id = None
    else:
        if body.scope_id is not None and await session.get(Project, body.scope_id) is None:
            # As for a project the caller may not see: nothing tells the two apart.
            raise NotFound("No such project.")
        project_id = authorize(principal, "role_binding:create", project_id=body.scope_id)
    await _check_subject(session, body.subject_type, body.subject_id)
    _check_may_grant(principal, body.role, project_id)
    if await repo.binding_exists(
        session, body.subject_type, body.subject_id, body.role, project_id
    ):
        raise Conflict("This binding exists already.")
    binding = RoleBinding(
        subject_type=body.subject_type,
        subject_id=body.subject_id,
        role=body.role,
        project_id=project_id,
        created_by=principal.user_id,
    )
    session.add(binding)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict("This binding exists already.") from exc
    if project_id is None and body.role == INSTANCE_ADMIN:
        await _mirror_admin(session, body.subject_id, True)
    await changed(session)
    await _audit(session, principal, "role_binding.create", binding)
    return binding


async def delete_binding(
    session: AsyncSession, principal: Principal, binding_id: uuid.UUID
) -> None:
    binding = await session.get(RoleBinding, binding_id)
    if binding is None or (
        binding.project_id is None and not may(principal, "role_binding:read", None)
    ):
        raise NotFound("Role binding not found.")
    if binding.project_id is None:
        authorize_system(principal, "role_binding:delete", resource_id=binding.id)
    else:
        authorize(
            principal,
            "role_binding:delete",
            project_id=binding.project_id,
            resource_id=binding.id,
        )
    _check_may_grant(principal, binding.role, binding.project_id)
    last_owner = (
        binding.project_id is not None
        and binding.role == "owner"
        and await repo.other_bindings(session, binding) == 0
    )
    if last_owner:
        raise Conflict("A project keeps at least one owner: make another owner first.")
    if binding.project_id is None and binding.role == INSTANCE_ADMIN:
        if binding.subject_id == principal.user_id:
            raise Conflict("You cannot remove your own instance administrator role.")
        if await repo.other_bindings(session, binding, subject_type="user") == 0:
            raise Conflict("The instance keeps at least one administrator.")
        await _mirror_admin(session, binding.subject_id, False)
    await session.delete(binding)
    await session.flush()
    await changed(session)
    await _audit(session, principal, "role_binding.delete", binding)


async def set_instance_admin(
    session: AsyncSession, actor: Principal | None, user: User, admin: bool
) -> None:
    """Make ``user`` an instance administrator or not: its system-scope ``admin`` binding
    and ``users.is_admin`` together (the user administration's ``is_admin``)."""
    existing = await session.scalar(
        repo.bindings_query(None, subject_type="user", subject_id=user.id, role=INSTANCE_ADMIN)
    )
    user.is_admin = admin
    if admin and existing is None:
        binding = RoleBinding(
            subject_type="user",
            subject_id=user.id,
            role=INSTANCE_ADMIN,
            project_id=None,
            created_by=actor.user_id if actor else None,
        )
        session.add(binding)
        await session.flush()
        await _audit(session, actor, "role_binding.create", binding)
    elif not admin and existing is not None:
        if await repo.other_bindings(session, existing, subject_type="user") == 0:
            raise Conflict("The instance keeps at least one administrator.")
        await session.delete(existing)
        await session.flush()
        await _audit(session, actor, "role_binding.delete", existing)
    await changed(session)


async def _mirror_admin(session: AsyncSession, user_id: uuid.UUID, admin: bool) -> None:
    user = await session.get(User, user_id)
    if user is not None:
        user.is_admin = admin


async def _audit(
    session: AsyncSession, principal: Principal | None, action: str, binding: RoleBinding
) -> None:
    await audit(
        session,
        action,
        principal,
        resource_type="role_binding",
        resource_id=binding.id,
        detail={
            "subject_type": binding.subject_type,
            "subject_id": str(binding.subject_id),
            "role": binding.role,
            "scope": f"project:{binding.project_id}" if binding.project_id else "system",
        },
        project_id=binding.project_id,
        system_scope=binding.project_id is None,
    )
