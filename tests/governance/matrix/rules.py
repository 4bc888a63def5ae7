"""What an operation needs, who calls it, and the outcome the role table implies.

A row of the matrix names what its operation needs (``Project``: a permission in the project
under test; ``System``: an instance-level permission, granted by system-scope roles only;
``InProject``: any caller that sees the project; ``Authenticated``; ``Public``; ``Token``).
Each caller is described by its role in that project, its system-scope role and its API key,
and ``expected`` derives the outcome class from ``taskgate.governance.roles``: nothing here
lists an outcome per cell.
"""

from __future__ import annotations

from dataclasses import dataclass

from taskgate.governance.roles import (
    INSTANCE_PERMISSIONS,
    PROJECT_PERMISSIONS,
    permissions_of,
    scope_for,
)

OK = "2xx"


@dataclass(frozen=True)
class Project:
    """``permission`` on a resource of the project under test, or in it as the request's."""

    permission: str

    def __post_init__(self) -> None:
        assert self.permission in PROJECT_PERMISSIONS, self.permission


@dataclass(frozen=True)
class System:
    """An instance-level permission (or a binding at system scope): system roles only.
    ``hidden``: whoever lacks it finds nothing (404) rather than a refusal (403)."""

    permission: str
    hidden: bool = False

    def __post_init__(self) -> None:
        assert self.permission in INSTANCE_PERMISSIONS | PROJECT_PERMISSIONS, self.permission


@dataclass(frozen=True)
class InProject:
    """Anyone who sees the project; what it shows is narrowed to what the caller may read."""


@dataclass(frozen=True)
class Authenticated:
    """Any signed-in caller, acting on itself; ``scope``: what an API key needs for it;
    ``unrestricted``: refused to a key restricted to one project (it would reach beyond it)."""

    scope: str | None = None
    unrestricted: bool = False


@dataclass(frozen=True)
class Public:
    """The same answer for everyone, signed in or not."""

    outcome: str = OK


@dataclass(frozen=True)
class Token:
    """Opened by a token of its own (the metrics scrape token), never by a caller's."""


Need = Project | System | InProject | Authenticated | Public | Token


@dataclass(frozen=True)
class Who:
    """A kind of caller, as the project under test sees it."""

    name: str
    role: str | None = None  # its role in the project
    system_role: str | None = None
    key_scopes: frozenset[str] | None = None  # an API key's scopes; None: a token
    key_elsewhere: bool = False  # an API key restricted to another project
    anonymous: bool = False

    def sees_project(self) -> bool:
        if self.anonymous or self.key_elsewhere:
            return False
        return self.role is not None or self.system_role is not None

    def restricted_key(self) -> bool:
        return self.key_scopes is not None or self.key_elsewhere

    def has_scope(self, scope: str) -> bool:
        if self.key_scopes is None or "*" in self.key_scopes or scope in self.key_scopes:
            return True
        return f"{scope.split(':', 1)[0]}:*" in self.key_scopes

    def granted(self, permission: str, *, system_only: bool = False) -> bool:
        held: frozenset[str] = frozenset()
        if self.system_role is not None:
            held |= permissions_of([self.system_role], system=True)[0]
        if self.role is not None and not system_only:
            # The matrix's resources are created by someone else: owned permissions never count.
            held |= permissions_of([self.role])[0]
        return permission in held


PRINCIPALS = (
    Who("anonymous", anonymous=True),
    Who("outsider"),  # a user of another project
    Who("viewer", role="viewer"),
    Who("member", role="member"),
    Who("operator", role="operator"),
    Who("project_admin", role="admin"),
    Who("read_key", role="admin", key_scopes=frozenset({"tasks:read"})),
    Who("other_key", role="admin", key_elsewhere=True),
    Who("instance_admin", system_role="admin"),
)


def expected(need: Need, who: Who, ok: str = OK) -> str:
    """The outcome class (``2xx``, ``401``, ``403``, ``404``, or ``ok``) ``who`` should get."""
    if isinstance(need, Public):
        return need.outcome
    if who.anonymous or isinstance(need, Token):
        return "401"
    if isinstance(need, Authenticated):
        if need.scope is not None and not who.has_scope(need.scope):
            return "403"
        return "403" if need.unrestricted and who.restricted_key() else ok
    if isinstance(need, System):
        allowed = who.has_scope(scope_for(need.permission)) and who.granted(
            need.permission, system_only=True
        )
        if allowed:
            return ok
        return "404" if need.hidden and who.has_scope(scope_for(need.permission)) else "403"
    if not who.sees_project():
        return "404"
    if isinstance(need, InProject):
        return ok
    if not who.has_scope(scope_for(need.permission)) or not who.granted(need.permission):
        return "403"
    return ok


def outcome(status: int) -> str:
    return OK if 200 <= status < 300 else str(status)
