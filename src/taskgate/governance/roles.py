"""The five roles and the ``resource:verb`` permissions each grants: a static table.

A role is held through a role binding, by a user or a group, in one project or at system
scope. In a project:

- ``viewer`` reads the project's resources;
- ``member`` also creates and runs (tasks, runs, workflows, schedules, events) and changes
  what it created (its ``owned`` permissions apply only where the resource's owner is the
  caller);
- ``operator`` also controls anyone's runs (cancel, pause, resume, replay, approve, and
  pause, resume or trigger schedules);
- ``admin`` also manages everyone's resources, the destinations, subscriptions and webhook
  sources, the role bindings, and reads the project's audit records;
- ``owner`` also disables and enables the project.

At system scope a role applies in every project: ``admin`` is the instance administrator
(every permission, everywhere, including the instance-level resources: users, groups,
access rules, system role bindings); ``viewer`` reads everything; ``operator`` controls runs
everywhere. Instance-level permissions are granted by system-scope roles only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ROLE_NAMES = ("owner", "admin", "operator", "member", "viewer")
# Roles a system-scope binding may carry (owner and member mean nothing instance-wide).
SYSTEM_ROLES = ("admin", "operator", "viewer")
INSTANCE_ADMIN = "admin"

# Every verb of every resource, project-level first. "read" is the only read verb.
PROJECT_RESOURCES: dict[str, tuple[str, ...]] = {
    "project": ("read", "update", "disable", "enable"),
    "task": ("read", "create", "cancel", "pause", "resume"),
    "run": ("read", "create", "update"),
    "job": ("read",),
    "workflow": ("read", "create", "update", "delete", "run"),
    "execution": ("read", "cancel", "replay"),
    "schedule": ("read", "create", "update", "delete", "pause", "resume", "trigger"),
    "destination": ("read", "create", "update", "delete", "test"),
    "subscription": ("read", "create", "update", "delete"),
    "webhook_source": ("read", "create", "update", "delete"),
    "approval": ("read", "decide"),
    "event": ("read", "create"),
    "audit": ("read",),
    "role_binding": ("read", "create", "delete"),
}
INSTANCE_RESOURCES: dict[str, tuple[str, ...]] = {
    "user": ("read", "create", "update", "disable"),
    "group": ("read", "create", "update", "disable"),
    "access_rule": ("read", "create", "update", "delete"),
}
RESOURCES = {**PROJECT_RESOURCES, **INSTANCE_RESOURCES}
ALL_PERMISSIONS = frozenset(f"{r}:{v}" for r, verbs in RESOURCES.items() for v in verbs)
PROJECT_PERMISSIONS = frozenset(f"{r}:{v}" for r, verbs in PROJECT_RESOURCES.items() for v in verbs)
INSTANCE_PERMISSIONS = ALL_PERMISSIONS - PROJECT_PERMISSIONS

# The API-key scope family that each resource's permissions need ("<family>:read|write"),
# as the routes declare them (http/auth.py): runs and jobs are read and written with tasks.
SCOPE_FAMILIES = {
    "project": "projects",
    "task": "tasks",
    "run": "tasks",
    "job": "tasks",
    "workflow": "workflows",
    "execution": "executions",
    "schedule": "schedules",
    "destination": "destinations",
    "subscription": "subscriptions",
    "webhook_source": "webhooks",
    "approval": "approvals",
    "event": "events",
    "audit": "audit",
    "role_binding": "role-bindings",
    "user": "users",
    "group": "groups",
    "access_rule": "access-rules",
}


def _perms(spec: str) -> frozenset[str]:
    """``"task:read,create run:read"`` → the permissions it names."""
    found: set[str] = set()
    for part in spec.split():
        resource, _, verbs = part.partition(":")
        found.update(f"{resource}:{verb}" for verb in verbs.split(","))
    unknown = found - ALL_PERMISSIONS
    assert not unknown, f"unknown permissions in the role table: {sorted(unknown)}"
    return frozenset(found)


_READS = frozenset(f"{r}:read" for r in PROJECT_RESOURCES if r != "audit")
_MEMBER = _READS | _perms("task:create run:create workflow:create,run schedule:create event:create")
_MEMBER_OWNED = _perms(
    "task:cancel,pause,resume run:update workflow:update,delete execution:cancel,replay "
    "schedule:update,delete,pause,resume,trigger approval:decide"
)
_OPERATOR = _MEMBER | _perms(
    "task:cancel,pause,resume execution:cancel,replay approval:decide schedule:pause,resume,trigger"
)
_ADMIN = (
    _OPERATOR
    | _MEMBER_OWNED
    | _perms(
        "project:update run:update workflow:update,delete schedule:update,delete "
        "destination:create,update,delete,test subscription:create,update,delete "
        "webhook_source:create,update,delete role_binding:create,delete audit:read"
    )
)
_OWNER = _ADMIN | _perms("project:disable,enable")


@dataclass(frozen=True)
class Role:
    name: str
    description: str
    # On any resource of the scope.
    permissions: frozenset[str]
    # Only on resources whose owner is the caller (what it created).
    owned: frozenset[str] = frozenset()


ROLES: dict[str, Role] = {
    "owner": Role("owner", "Everything in the project, and disabling or enabling it.", _OWNER),
    "admin": Role(
        "admin",
        "Manages the project: everyone's resources, destinations, subscriptions, webhook "
        "sources and role bindings. At system scope: the instance administrator.",
        _ADMIN,
    ),
    "operator": Role(
        "operator",
        "A member who also controls anyone's runs: cancel, pause, resume, replay, approve.",
        _OPERATOR,
        _MEMBER_OWNED - _OPERATOR,
    ),
    "member": Role(
        "member",
        "Reads, creates and runs; changes what it created.",
        _MEMBER,
        _MEMBER_OWNED,
    ),
    "viewer": Role("viewer", "Reads the project's resources.", _READS),
}
# At system scope: the instance administrator may do everything; a system viewer also reads
# the instance-level resources and every project's audit records.
SYSTEM_GRANTS: dict[str, Role] = {
    "admin": Role("admin", ROLES["admin"].description, ALL_PERMISSIONS),
    "operator": ROLES["operator"],
    "viewer": Role(
        "viewer",
        ROLES["viewer"].description,
        _READS | frozenset(f"{r}:read" for r in (*INSTANCE_RESOURCES, "audit")),
    ),
}


def permissions_of(
    roles: Iterable[str], *, system: bool = False
) -> tuple[frozenset[str], frozenset[str]]:
    """(granted on anything, granted on what the caller owns) by ``roles``."""
    table = SYSTEM_GRANTS if system else ROLES
    anything: set[str] = set()
    owned: set[str] = set()
    for name in roles:
        role = table.get(name)
        if role is not None:
            anything |= role.permissions
            owned |= role.owned
    return frozenset(anything), frozenset(owned - anything)


def split(permission: str) -> tuple[str, str]:
    """``"task:create"`` → ``("task", "create")``."""
    resource, _, verb = permission.partition(":")
    return resource, verb


def is_read(permission: str) -> bool:
    return permission.endswith(":read")


def _scope_for(permission: str) -> str:
    resource, verb = split(permission)
    family = SCOPE_FAMILIES.get(resource, resource)
    return f"{family}:{'read' if verb == 'read' else 'write'}"


_SCOPES = {permission: _scope_for(permission) for permission in ALL_PERMISSIONS}
# Permissions that either of two scopes allows (as their routes declare): running a workflow
# starts an execution.
OR_SCOPES = {"workflow:run": "executions:write"}


def scope_for(permission: str) -> str:
    """The API-key scope a permission needs: ``task:create`` → ``tasks:write`` (or, for the
    few in ``OR_SCOPES``, that one's alternative)."""
    return _SCOPES.get(permission) or _scope_for(permission)
