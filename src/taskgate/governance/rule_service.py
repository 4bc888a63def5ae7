"""Access-rule use cases: instance administrators manage them (``access_rule:*`` at system
scope); system-scope readers may list them. How rules decide: taskgate.governance.rules."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.audit.service import audit
from taskgate.auth.principal import Principal
from taskgate.errors import NotFound, ValidationFailed
from taskgate.governance import access_repository as repo
from taskgate.governance.access import authorize_system
from taskgate.governance.access_schemas import RuleCreate, RuleFilters, RuleOut, RuleUpdate
from taskgate.governance.changes import changed
from taskgate.governance.rules import check_conditions, check_target
from taskgate.http.pagination import Page, PageParams, page_of
from taskgate.models import AccessRule, Group, Project, User

_SUBJECTS: dict[str, type[User | Group | Project]] = {
    "user": User,
    "group": Group,
    "project": Project,
}


async def list_rules(
    session: AsyncSession, principal: Principal, filters: RuleFilters, page: PageParams
) -> Page[RuleOut]:
    authorize_system(principal, "access_rule:read")
    return await page_of(session, repo.rules_listing(filters), page, RuleOut.of)


async def get_rule(session: AsyncSession, principal: Principal, rule_id: uuid.UUID) -> AccessRule:
    authorize_system(principal, "access_rule:read", resource_id=rule_id)
    return await _rule(session, rule_id)


async def _rule(session: AsyncSession, rule_id: uuid.UUID) -> AccessRule:
    rule = await session.get(AccessRule, rule_id)
    if rule is None:
        raise NotFound("Access rule not found.")
    return rule


async def create_rule(session: AsyncSession, principal: Principal, body: RuleCreate) -> AccessRule:
    authorize_system(principal, "access_rule:create")
    check_target(body.action, body.resource_type)
    conditions = check_conditions(body.conditions)
    if await session.get(_SUBJECTS[body.subject_type], body.subject_id) is None:
        raise ValidationFailed.field("subject_id", f"no such {body.subject_type}")
    rule = AccessRule(
        subject_type=body.subject_type,
        subject_id=body.subject_id,
        action=body.action,
        resource_type=body.resource_type,
        resource_pattern=body.resource_pattern,
        effect=body.effect,
        priority=body.priority,
        conditions=conditions,
        created_by=principal.user_id,
    )
    session.add(rule)
    await session.flush()
    await changed(session)
    await _audit(session, principal, "access_rule.create", rule)
    return rule


async def update_rule(
    session: AsyncSession, principal: Principal, rule_id: uuid.UUID, body: RuleUpdate
) -> AccessRule:
    authorize_system(principal, "access_rule:update", resource_id=rule_id)
    rule = await _rule(session, rule_id)
    changes = body.model_dump(exclude_unset=True)
    for name in ("action", "resource_type", "resource_pattern", "effect", "priority"):
        if name in changes and changes[name] is None:
            raise ValidationFailed.field(name, "may not be null")
    check_target(
        changes.get("action", rule.action), changes.get("resource_type", rule.resource_type)
    )
    if "conditions" in changes:
        changes["conditions"] = check_conditions(changes["conditions"] or {})
    for name, value in changes.items():
        setattr(rule, name, value)
    await session.flush()
    await changed(session)
    await _audit(session, principal, "access_rule.update", rule, fields=sorted(changes))
    return rule


async def delete_rule(session: AsyncSession, principal: Principal, rule_id: uuid.UUID) -> None:
    authorize_system(principal, "access_rule:delete", resource_id=rule_id)
    rule = await _rule(session, rule_id)
    await session.delete(rule)
    await session.flush()
    await changed(session)
    await _audit(session, principal, "access_rule.delete", rule)


async def _audit(
    session: AsyncSession,
    principal: Principal,
    action: str,
    rule: AccessRule,
    fields: list[str] | None = None,
) -> None:
    detail = {
        "subject_type": rule.subject_type,
        "subject_id": str(rule.subject_id),
        "permission": f"{rule.resource_type}:{rule.action}",
        "effect": rule.effect,
        "priority": rule.priority,
    }
    if fields is not None:
        detail["fields"] = fields
    await audit(
        session,
        action,
        principal,
        resource_type="access_rule",
        resource_id=rule.id,
        detail=detail,
        system_scope=True,
    )
