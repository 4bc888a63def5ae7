"""Identity queries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.http.pagination import Listing
from taskgate.identity.schemas import UserFilters
from taskgate.models import ApiKey, RefreshToken, StreamTicket, User


async def user_by_login(session: AsyncSession, identifier: str) -> User | None:
    lowered = identifier.lower()
    result: User | None = await session.scalar(
        select(User).where(or_(func.lower(User.username) == lowered, User.email == lowered))
    )
    return result


async def username_taken(session: AsyncSession, username: str) -> bool:
    found = await session.scalar(
        select(User.id).where(func.lower(User.username) == username.lower())
    )
    return found is not None


async def email_taken(session: AsyncSession, email: str, *, other_than: uuid.UUID | None) -> bool:
    stmt = select(User.id).where(User.email == email.lower())
    if other_than is not None:
        stmt = stmt.where(User.id != other_than)
    return await session.scalar(stmt) is not None


async def any_user(session: AsyncSession) -> bool:
    return await session.scalar(select(User.id).limit(1)) is not None


def users_listing(filters: UserFilters) -> Listing[User]:
    stmt = select(User)
    if filters.search:
        stmt = stmt.where(User.username.ilike(f"%{filters.search}%"))
    if filters.is_active is not None:
        stmt = stmt.where(User.is_active == filters.is_active)
    return Listing(stmt, {"created_at": User.created_at, "username": User.username}, User.id)


async def count_failed_login(session: AsyncSession, user_id: uuid.UUID) -> int:
    """Add one failed login and return the new count, atomically (concurrent failures all
    count)."""
    failures = await session.scalar(
        update(User)
        .where(User.id == user_id)
        .values(failed_logins=User.failed_logins + 1)
        .returning(User.failed_logins)
    )
    return int(failures or 0)


async def lock_user(session: AsyncSession, user_id: uuid.UUID, until: datetime) -> None:
    await session.execute(update(User).where(User.id == user_id).values(locked_until=until))


async def refresh_token_by_hash(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    result: RefreshToken | None = await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == token_hash)
    )
    return result


async def spend_refresh_token(session: AsyncSession, token_id: uuid.UUID, now: datetime) -> bool:
    """Mark a refresh token used; False if another request spent it first."""
    result = await session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.id == token_id,
            RefreshToken.used_at.is_(None),
            RefreshToken.revoked_at.is_(None),
        )
        .values(used_at=now)
    )
    return bool(getattr(result, "rowcount", 0))


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_user_tokens(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def api_keys_listing(user_id: uuid.UUID) -> Listing[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.user_id == user_id)
    return Listing(stmt, {"created_at": ApiKey.created_at}, ApiKey.id)


async def api_key_for(
    session: AsyncSession, key_id: uuid.UUID, user_id: uuid.UUID
) -> ApiKey | None:
    result: ApiKey | None = await session.scalar(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id)
    )
    return result


async def touch_api_keys(session: AsyncSession, used: dict[uuid.UUID, datetime]) -> None:
    for key_id, at in used.items():
        await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=at))


@dataclass(frozen=True)
class TakenTicket:
    user_id: uuid.UUID
    api_key_id: uuid.UUID | None
    scopes: list[str]
    auth_version: int | None
    expires_at: datetime


async def take_stream_ticket(session: AsyncSession, token_hash: str) -> TakenTicket | None:
    """Delete the ticket and return what it carried: of two processes redeeming it at once,
    one gets it."""
    stmt = (
        delete(StreamTicket)
        .where(StreamTicket.token_hash == token_hash)
        .returning(
            StreamTicket.user_id,
            StreamTicket.api_key_id,
            StreamTicket.scopes,
            StreamTicket.auth_version,
            StreamTicket.expires_at,
        )
    )
    row = (await session.execute(stmt)).first()
    if row is None:
        return None
    return TakenTicket(row[0], row[1], list(row[2] or []), row[3], row[4])


async def usable_api_key(session: AsyncSession, key_id: uuid.UUID, now: datetime) -> ApiKey | None:
    """The key, unless it is revoked or expired."""
    key = await session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None:
        return None
    return key if key.expires_at is None or key.expires_at > now else None


async def forget_stream_tickets(session: AsyncSession, now: datetime) -> int:
    result = await session.execute(delete(StreamTicket).where(StreamTicket.expires_at <= now))
    return int(getattr(result, "rowcount", 0) or 0)
