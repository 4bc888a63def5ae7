"""Account use cases: the first admin, and administrators listing and managing users
(``user:*`` at system scope: instance administrators manage, system viewers read)."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.audit.service import audit
from taskgate.auth.credentials import hash_password
from taskgate.auth.principal import Authenticator, Principal
from taskgate.errors import Conflict, NotFound, ValidationFailed
from taskgate.governance.access import authorize_system
from taskgate.governance.binding_service import set_instance_admin
from taskgate.governance.changes import changed
from taskgate.governance.service import create_default_project
from taskgate.http.pagination import Page, PageParams, page_of
from taskgate.identity import repository as repo
from taskgate.identity.auth_service import revoke_sessions
from taskgate.identity.schemas import UserCreate, UserFilters, UserOut, UserUpdate
from taskgate.models import User
from taskgate.timezones import validate_timezone


async def list_users(
    session: AsyncSession, actor: Principal, filters: UserFilters, page: PageParams
) -> Page[UserOut]:
    authorize_system(actor, "user:read")
    return await page_of(session, repo.users_listing(filters), page, UserOut.model_validate)


async def create_user(session: AsyncSession, actor: Principal | None, body: UserCreate) -> User:
    if actor is not None:
        authorize_system(actor, "user:create")
    if await repo.username_taken(session, body.username):
        raise Conflict(f"The username {body.username!r} is taken.")
    email = body.email.lower() if body.email else None
    if email and await repo.email_taken(session, email, other_than=None):
        raise Conflict("That email address is taken.")
    validate_timezone(body.timezone, "timezone")
    user = User(
        username=body.username,
        email=email,
        password_hash=hash_password(body.password),
        is_admin=False,
        timezone=body.timezone,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        # Another request took the name or address between our check and this insert.
        raise Conflict("That username or email address is taken.") from exc
    await create_default_project(session, user)
    if body.is_admin:
        await set_instance_admin(session, actor, user, True)
    await audit(
        session,
        "user.create",
        actor,
        resource_type="user",
        resource_id=user.id,
        detail={"username": user.username, "is_admin": user.is_admin},
    )
    return user


@dataclass(frozen=True)
class FirstAdmin:
    username: str
    password: str
    generated: bool


async def ensure_first_admin(
    session: AsyncSession, password: str | None, username: str = "admin"
) -> FirstAdmin | None:
    """Create the first administrator on an empty database; None when users exist."""
    if await repo.any_user(session):
        return None
    chosen = password or secrets.token_urlsafe(12)
    await create_user(session, None, UserCreate(username=username, password=chosen, is_admin=True))
    return FirstAdmin(username, chosen, generated=password is None)


async def get_user(
    session: AsyncSession, actor: Principal, user_id: uuid.UUID, *, permission: str = "user:read"
) -> User:
    authorize_system(actor, permission, resource_id=user_id)
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


async def update_user(
    session: AsyncSession,
    actor: Principal,
    user_id: uuid.UUID,
    body: UserUpdate,
    authenticator: Authenticator,
) -> User:
    user = await get_user(session, actor, user_id, permission="user:update")
    changes = body.model_dump(exclude_unset=True)
    if "email" in changes:
        email = changes["email"].lower() if changes["email"] else None
        if email and await repo.email_taken(session, email, other_than=user.id):
            raise Conflict("That email address is taken.")
        user.email = email
    if changes.get("is_admin") is not None and changes["is_admin"] != user.is_admin:
        if user.id == actor.user_id and not changes["is_admin"]:
            raise ValidationFailed.field("is_admin", "you cannot remove your own admin role")
        await set_instance_admin(session, actor, user, changes["is_admin"])
    if changes.get("timezone") is not None:
        validate_timezone(changes["timezone"], "timezone")
        user.timezone = changes["timezone"]
    authenticator.forget_user(session, user.id)
    await audit(
        session,
        "user.update",
        actor,
        resource_type="user",
        resource_id=user.id,
        detail={"fields": sorted(changes)},
    )
    return user


async def set_active(
    session: AsyncSession,
    actor: Principal,
    user_id: uuid.UUID,
    active: bool,
    authenticator: Authenticator,
) -> User:
    user = await get_user(session, actor, user_id, permission="user:disable")
    if user.id == actor.user_id and not active:
        raise Conflict("You cannot disable your own account.")
    user.is_active = active
    if not active:
        await revoke_sessions(session, user.id, authenticator)
    authenticator.forget_user(session, user.id)
    await changed(session)
    await audit(
        session,
        "user.enable" if active else "user.disable",
        actor,
        resource_type="user",
        resource_id=user.id,
    )
    return user


async def admin_revoke_sessions(
    session: AsyncSession, actor: Principal, user_id: uuid.UUID, authenticator: Authenticator
) -> None:
    user = await get_user(session, actor, user_id, permission="user:update")
    await revoke_sessions(session, user.id, authenticator)
    await audit(session, "user.revoke_sessions", actor, resource_type="user", resource_id=user.id)


async def reset_password(
    session: AsyncSession,
    actor: Principal,
    user_id: uuid.UUID,
    password: str,
    authenticator: Authenticator,
) -> None:
    user = await get_user(session, actor, user_id, permission="user:update")
    await _replace_password(session, user, password, authenticator)
    await audit(session, "user.reset_password", actor, resource_type="user", resource_id=user.id)


async def set_password(session: AsyncSession, username: str, password: str) -> User:
    """The host's operator (``taskgate users set-password``) sets an account's password."""
    user = await repo.user_by_login(session, username)
    if user is None:
        raise NotFound(f"No user {username!r}.")
    await _replace_password(session, user, password, None)
    await audit(session, "user.reset_password", None, resource_type="user", resource_id=user.id)
    return user


async def _replace_password(
    session: AsyncSession, user: User, password: str, authenticator: Authenticator | None
) -> None:
    user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None
    await revoke_sessions(session, user.id, authenticator)
