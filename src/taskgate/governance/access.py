"""The authorization seam: which projects a principal sees, and whether it may act in one.

Every list filters by :func:`visible_projects` (SQL, never rows filtered in Python) and every
write asks :func:`authorize`. Today a user sees the projects it owns or is a member of, an
administrator sees all, and any visible, active project may be written to; roles, bindings
and access rules will refine these two functions without their callers changing.
"""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, Select, select, true
from sqlalchemy.orm import InstrumentedAttribute

from taskgate.auth.principal import Principal
from taskgate.errors import Conflict, NotFound
from taskgate.models import Project, ProjectMember

_READ_VERBS = frozenset({"read", "list"})


def visible_projects(principal: Principal) -> Select[tuple[uuid.UUID]]:
    """The ids of the projects ``principal`` may see, as a subquery to filter by."""
    if principal.is_admin:
        return select(Project.id)
    return select(ProjectMember.project_id).where(ProjectMember.user_id == principal.user_id)


def project_visible(
    principal: Principal, project_id: InstrumentedAttribute[uuid.UUID]
) -> ColumnElement[bool]:
    """A WHERE clause: ``project_id`` is one of the projects ``principal`` may see."""
    if principal.is_admin:
        return true()
    return project_id.in_(visible_projects(principal))


def authorize(principal: Principal, permission: str) -> uuid.UUID:
    """Check that ``principal`` may do ``permission`` (``resource:verb``) in the request's
    project, and return that project's id to stamp on what it writes.

    The project was found visible when the request selected it; a disabled project stays
    readable and refuses every change (409).
    """
    project_id = principal.project_id
    if project_id is None:
        raise NotFound("No such project.")
    verb = permission.rpartition(":")[2]
    if verb not in _READ_VERBS and not principal.project_active:
        raise Conflict("The project is disabled: its data can be read but not changed.")
    return project_id
