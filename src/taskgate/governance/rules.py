"""Access rules: allow or deny, applied after roles.

A rule names a subject (a user, a group, or a project: everyone acting in it), an ``action``
(a verb such as ``cancel``, or ``*``), a ``resource_type`` (``task``, or ``*``), a
``resource_pattern`` (a glob over the resource's id; ``*`` matches every resource, and a
check that names no resource), an ``effect`` and a ``priority``, and optional ``conditions``:

- ``{"project_id": "<id>"}``: only in that project;
- ``{"via": "api_key"}`` or ``{"via": "token"}``: only for callers using that credential;
- ``{"owner": "self"}`` or ``{"owner": "other"}``: only on resources the caller created, or
  on those it did not.

Evaluation: when no rule matches, the roles decide (and no role grant means denied). When
rules match, those of the highest priority among them decide, and among them deny wins. So a
deny holds against every allow of its priority or lower; an allow of a higher priority is
the deliberate exception to it. Rules never make a project visible (a role in it does) and
never bind the instance administrator.
"""

from __future__ import annotations

import fnmatch
import uuid
from dataclasses import dataclass
from typing import Any

from taskgate.errors import ValidationFailed
from taskgate.governance.roles import RESOURCES
from taskgate.models import AccessRule

CONDITIONS = ("project_id", "via", "owner")
_VIA = ("api_key", "token")
_OWNER = ("self", "other")


@dataclass(frozen=True)
class Rule:
    id: uuid.UUID
    subject_type: str
    subject_id: uuid.UUID
    action: str
    resource_type: str
    resource_pattern: str
    allow: bool
    priority: int
    project_id: uuid.UUID | None = None
    via: str | None = None
    owner: str | None = None

    @classmethod
    def of(cls, row: AccessRule) -> Rule:
        conditions = row.conditions or {}
        project = conditions.get("project_id")
        return cls(
            row.id,
            row.subject_type,
            row.subject_id,
            row.action,
            row.resource_type,
            row.resource_pattern or "*",
            row.effect == "allow",
            row.priority,
            uuid.UUID(project) if project else None,
            conditions.get("via"),
            conditions.get("owner"),
        )

    def applies(
        self,
        permission: str,
        project_id: uuid.UUID | None,
        *,
        resource_id: uuid.UUID | str | None,
        owned: bool | None,
        via_key: bool,
    ) -> bool:
        resource, _, verb = permission.partition(":")
        if self.action not in ("*", verb) or self.resource_type not in ("*", resource):
            return False
        if self.subject_type == "project" and self.subject_id != project_id:
            return False
        if self.project_id is not None and self.project_id != project_id:
            return False
        if self.via is not None and (self.via == "api_key") != via_key:
            return False
        if self.owner is not None and (owned is None or (self.owner == "self") != owned):
            return False
        if self.resource_pattern != "*":
            return resource_id is not None and fnmatch.fnmatchcase(
                str(resource_id), self.resource_pattern
            )
        return True


def decide(rules: list[Rule]) -> Rule | None:
    """The rule that decides among those that apply: the highest priority, deny first."""
    if not rules:
        return None
    top = max(rule.priority for rule in rules)
    decisive = [rule for rule in rules if rule.priority == top]
    return next((rule for rule in decisive if not rule.allow), decisive[0])


def check_target(action: str, resource_type: str) -> None:
    """400 unless ``action`` and ``resource_type`` name a permission (or ``*``)."""
    if resource_type != "*" and resource_type not in RESOURCES:
        names = ", ".join(sorted(RESOURCES))
        raise ValidationFailed.field("resource_type", f"use '*' or one of {names}")
    verbs = (
        RESOURCES[resource_type]
        if resource_type != "*"
        else {v for vs in RESOURCES.values() for v in vs}
    )
    if action != "*" and action not in verbs:
        raise ValidationFailed.field("action", f"use '*' or one of {', '.join(sorted(verbs))}")


def check_conditions(conditions: dict[str, Any]) -> dict[str, Any]:
    """The conditions, checked and normalised: 400 naming the first that is unknown or
    malformed."""
    checked: dict[str, Any] = {}
    for key, value in conditions.items():
        field = f"conditions.{key}"
        if key not in CONDITIONS:
            raise ValidationFailed.field(field, f"unknown condition; use {', '.join(CONDITIONS)}")
        if key == "project_id":
            try:
                value = str(uuid.UUID(str(value)))
            except ValueError:
                raise ValidationFailed.field(field, "must be a project id") from None
        elif key == "via" and value not in _VIA:
            raise ValidationFailed.field(field, f"use one of {', '.join(_VIA)}")
        elif key == "owner" and value not in _OWNER:
            raise ValidationFailed.field(field, f"use one of {', '.join(_OWNER)}")
        checked[key] = value
    return checked
