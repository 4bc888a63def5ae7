"""The authorization seam: which projects a principal sees, and whether it may act.

Services decide; endpoints never do. A use case asks one of:

- ``authorize(principal, "task:cancel", project_id=task.project_id, owner_id=task.owner_id,
  resource_id=task.id)`` before acting on a resource of a project, or
  ``authorize(principal, "task:create")`` to act in the request's project (``project_id``
  None). It returns the project's id, to stamp on what the use case writes. A project the
  principal cannot see is a ``NotFound`` (404: "Task not found." when the project was the
  resource's, "No such project." when it was the request's); visible but not permitted is a
  ``Forbidden`` (403 ``FORBIDDEN``, the message naming the permission); a change in a
  disabled project is a ``Conflict`` (409; reads stay allowed, and ``project:enable``).
  ``owner_id`` is the resource's creator: a ``member`` may change what it created only.
- ``authorize_system(principal, "group:create")`` for instance-level resources (users,
  groups, access rules, system-scope role bindings): granted by system-scope roles only.
- ``visible_projects(principal)`` / ``project_visible(principal, Task.project_id)`` in the
  WHERE clause of a query that spans projects: SQL, never rows filtered in Python.

What decides (see taskgate.governance.roles and .rules):

1. Visibility: a role in the project (bound to the user or one of its active groups), or any
   system-scope role; an API key restricted to a project sees that project only.
2. The API key's scopes: the permission's scope family (``task:*`` needs ``tasks:read`` or
   ``tasks:write``): a key never exceeds its user, nor its scopes.
3. The roles' permissions in the project (and the system-scope roles' everywhere), then the
   access rules that apply: when any does, the highest priority decides, deny first; when
   none does, no role grant means denied. The instance administrator may do everything and
   is bound by no rule (rules could otherwise lock out the one who can change them).
4. A disabled project refuses every change.

Every denial (the 404 of an invisible project and every 403) carries an audit record with
the effective subject (``user_id, group_ids, role_names, scope``); the error handler
(taskgate.http.errors) hands it to the recorder the app binds (``app.state.record_denial``),
which writes it in a unit of work of its own once the request's has rolled back, so it
survives that rollback.

Principals built by hand for the runtime (a schedule firing as its owner) carry no grants:
they are trusted with their one project and checked only for its state. Every HTTP principal
carries its user's grants (taskgate.auth.principal.Authenticator).
"""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, Select, false, select, true
from sqlalchemy.orm import InstrumentedAttribute

from taskgate.audit.service import audit_values
from taskgate.auth.principal import Principal
from taskgate.errors import Conflict, Forbidden, NotFound, TaskgateError
from taskgate.governance.grants import grants_of
from taskgate.governance.roles import (
    ALL_PERMISSIONS,
    OR_SCOPES,
    PROJECT_PERMISSIONS,
    is_read,
    scope_for,
    split,
)
from taskgate.governance.rules import decide
from taskgate.models import Project

# Disabling is idempotent, and enabling is how a disabled project comes back.
_ALWAYS_ALLOWED_WHEN_DISABLED = frozenset({"project:enable", "project:disable"})


def sees(principal: Principal, project_id: uuid.UUID) -> bool:
    """Whether ``principal`` may see project ``project_id`` at all."""
    if principal.key_project_id is not None and project_id != principal.key_project_id:
        return False
    grants = grants_of(principal)
    if grants is None:
        return principal.is_admin or project_id == principal.project_id
    return grants.sees(project_id)


def is_active(principal: Principal, project_id: uuid.UUID) -> bool:
    grants = grants_of(principal)
    if grants is None:
        return principal.project_active if project_id == principal.project_id else True
    return project_id not in grants.disabled_projects


def refusal(
    principal: Principal,
    permission: str,
    project_id: uuid.UUID | None,
    *,
    owner_id: uuid.UUID | None = None,
    resource_id: uuid.UUID | str | None = None,
) -> str | None:
    """Why ``principal`` may not do ``permission`` in ``project_id`` (None: at system scope),
    or None when it may. Visibility and the disabled state are the caller's to check."""
    scope = scope_for(permission)
    if not principal.has_scope(scope):
        alternative = OR_SCOPES.get(permission)
        if alternative is None or not principal.has_scope(alternative):
            return f"This API key lacks the scope {scope!r} ({permission})."
    if project_id is None and principal.key_project_id is not None:
        return f"An API key restricted to one project cannot act instance-wide ({permission})."
    grants = grants_of(principal)
    if grants is None:
        if project_id is None and not principal.is_admin:
            return f"Not allowed: this needs the permission {permission}."
        return None
    if grants.is_admin:
        return None
    anything, owned_only = grants.permissions(project_id)
    owned = None if owner_id is None else owner_id == principal.user_id
    granted = permission in anything or (bool(owned) and permission in owned_only)
    if grants.rules:
        via_key = principal.api_key_id is not None
        rule = decide(
            [
                rule
                for rule in grants.rules
                if rule.applies(
                    permission, project_id, resource_id=resource_id, owned=owned, via_key=via_key
                )
            ]
        )
        if rule is not None:
            return (
                None if rule.allow else f"Not allowed: access rule {rule.id} denies {permission}."
            )
    if granted:
        return None
    if permission in owned_only:
        return (
            f"Not allowed: this needs the permission {permission} "
            "(you hold it for what you created only)."
        )
    return f"Not allowed: this needs the permission {permission}."


def _missing(permission: str) -> str:
    resource = split(permission)[0].replace("_", " ")
    return f"{resource[:1].upper()}{resource[1:]} not found."


def denied(
    error: TaskgateError,
    principal: Principal,
    permission: str,
    project_id: uuid.UUID | None,
    resource_id: uuid.UUID | str | None,
) -> TaskgateError:
    """``error`` with the audit record of the denial, written by the error handler."""
    error.denial = audit_values(
        "access.denied",
        principal,
        resource_type=split(permission)[0],
        resource_id=resource_id,
        outcome="failure",
        detail={"permission": permission, "status": error.status, "reason": error.message},
        actor_name=None,
        project_id=project_id,
        system_scope=project_id is None,
    )
    return error


def authorize(
    principal: Principal,
    permission: str,
    *,
    project_id: uuid.UUID | None = None,
    owner_id: uuid.UUID | None = None,
    resource_id: uuid.UUID | str | None = None,
) -> uuid.UUID:
    """Check that ``principal`` may do ``permission`` (``resource:verb``) in ``project_id``
    (None: the request's project), on a resource created by ``owner_id`` (named
    ``resource_id``, for access rules), and return the project's id. See the module."""
    named = project_id is not None
    project = project_id if project_id is not None else principal.project_id
    if project is None:
        raise NotFound("No such project.")
    if not sees(principal, project):
        message = _missing(permission) if named else "No such project."
        raise denied(NotFound(message), principal, permission, project, resource_id)
    reason = refusal(principal, permission, project, owner_id=owner_id, resource_id=resource_id)
    if reason is not None:
        raise denied(Forbidden(reason), principal, permission, project, resource_id)
    if (
        not is_read(permission)
        and permission not in _ALWAYS_ALLOWED_WHEN_DISABLED
        and not is_active(principal, project)
    ):
        raise Conflict("The project is disabled: its data can be read but not changed.")
    return project


def authorize_system(
    principal: Principal, permission: str, *, resource_id: uuid.UUID | str | None = None
) -> None:
    """Check an instance-level permission (users, groups, access rules, system bindings),
    which only system-scope roles grant: 403 naming it otherwise."""
    reason = refusal(principal, permission, None, resource_id=resource_id)
    if reason is not None:
        raise denied(Forbidden(reason), principal, permission, None, resource_id)


def may(
    principal: Principal,
    permission: str,
    project_id: uuid.UUID | None,
    *,
    owner_id: uuid.UUID | None = None,
) -> bool:
    """Whether ``authorize`` would let ``principal`` do ``permission`` (no audit, no error);
    ``project_id`` None: at system scope."""
    if project_id is not None and not sees(principal, project_id):
        return False
    return refusal(principal, permission, project_id, owner_id=owner_id) is None


def effective_permissions(
    principal: Principal, project_id: uuid.UUID | None
) -> tuple[list[str], list[str]]:
    """What ``principal`` may do in ``project_id`` (None: at system scope), for a person to
    read: (on anything, only on what it created), with its key's scopes and the access rules
    that apply to every resource taken into account."""
    universe = PROJECT_PERMISSIONS if project_id is not None else ALL_PERMISSIONS
    anything = sorted(p for p in universe if may(principal, p, project_id))
    granted = set(anything)
    owned = sorted(
        p
        for p in universe
        if p not in granted and may(principal, p, project_id, owner_id=principal.user_id)
    )
    return anything, owned


def _visible_ids(principal: Principal) -> list[uuid.UUID] | None:
    """The ids of the projects ``principal`` sees; None: all of them."""
    grants = grants_of(principal)
    if grants is None:
        every = principal.is_admin
        ids = [] if principal.project_id is None else [principal.project_id]
    else:
        every = bool(grants.system_roles)
        ids = list(grants.project_roles)
    restricted = principal.key_project_id
    if restricted is not None:
        return [restricted] if every or restricted in ids else []
    return None if every else ids


def visible_projects(principal: Principal) -> Select[tuple[uuid.UUID]]:
    """The ids of the projects ``principal`` may see, as a subquery to filter by."""
    ids = _visible_ids(principal)
    if ids is None:
        return select(Project.id)
    return select(Project.id).where(Project.id.in_(ids) if ids else false())


def project_visible(
    principal: Principal, project_id: InstrumentedAttribute[uuid.UUID]
) -> ColumnElement[bool]:
    """A WHERE clause: ``project_id`` is one of the projects ``principal`` may see."""
    ids = _visible_ids(principal)
    if ids is None:
        return true()
    return project_id.in_(ids) if ids else false()
