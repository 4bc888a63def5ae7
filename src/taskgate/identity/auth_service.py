"""Sign-in use cases: login, refresh with rotation and reuse detection, logout."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.audit.service import audit, audit_failure
from taskgate.auth.credentials import (
    AccessTokens,
    generate_refresh_token,
    sha256_hex,
    verify_password,
)
from taskgate.auth.principal import Authenticator, Principal
from taskgate.clock import utcnow
from taskgate.db.session import Database, on_rollback
from taskgate.errors import RateLimited, Unauthorized
from taskgate.http.ratelimit import RateLimiter
from taskgate.identity import repository as repo
from taskgate.identity.schemas import LoginRequest, TokenPair
from taskgate.ids import new_id
from taskgate.models import RefreshToken, User
from taskgate.settings import AuthSettings

_BAD_LOGIN = "Invalid username or password."


class AuthService:
    def __init__(
        self,
        db: Database,
        tokens: AccessTokens,
        authenticator: Authenticator,
        limiter: RateLimiter,
        settings: AuthSettings,
    ) -> None:
        self.db = db
        self.tokens = tokens
        self.authenticator = authenticator
        self.limiter = limiter
        self.settings = settings

    async def login(self, session: AsyncSession, body: LoginRequest, ip: str) -> TokenPair:
        identifier = body.identifier
        try:
            await self.limiter.check_login(ip, identifier)
        except RateLimited:
            self._refuse(session, identifier, "rate_limited")
            raise
        user = await repo.user_by_login(session, identifier)
        now = utcnow()
        if user is not None and user.locked_until is not None and user.locked_until > now:
            self._refuse(session, identifier, "locked")
            raise Unauthorized("Too many failed attempts; the account is locked for a while.")
        if not verify_password(user.password_hash if user else None, body.password):
            user_id = user.id if user else None
            on_rollback(session, lambda: self._record_failure(user_id, identifier))
            raise Unauthorized(_BAD_LOGIN)
        assert user is not None
        if not user.is_active:
            self._refuse(session, identifier, "disabled")
            raise Unauthorized(_BAD_LOGIN)
        user.failed_logins = 0
        user.locked_until = None
        user.last_login_at = now
        self.authenticator.forget_user(session, user.id)
        pair = await self._issue(session, user, family_id=new_id())
        await audit(
            session, "auth.login", _principal(user), resource_type="user", resource_id=user.id
        )
        return pair

    def _refuse(self, session: AsyncSession, identifier: str, reason: str) -> None:
        """Audit a refused login once the request's transaction has rolled back."""

        async def record() -> None:
            await audit_failure(
                self.db, "auth.login", None, actor_name=identifier, detail={"reason": reason}
            )

        on_rollback(session, record)

    async def _record_failure(self, user_id: uuid.UUID | None, identifier: str) -> None:
        if user_id is not None:
            async with self.db.transaction() as session:
                failures = await repo.count_failed_login(session, user_id)
                if failures >= self.settings.login_max_failures:
                    # Stepped lockout: each further failure doubles the wait.
                    steps = failures - self.settings.login_max_failures
                    seconds = self.settings.login_lockout_seconds * (2 ** min(steps, 6))
                    await repo.lock_user(session, user_id, utcnow() + timedelta(seconds=seconds))
        await audit_failure(
            self.db, "auth.login", None, actor_name=identifier, detail={"reason": "bad_credentials"}
        )

    async def refresh(self, session: AsyncSession, raw_token: str) -> TokenPair:
        now = utcnow()
        token = await repo.refresh_token_by_hash(session, sha256_hex(raw_token))
        if token is None or token.expires_at <= now:
            raise Unauthorized("Invalid or expired refresh token.")
        spent = token.used_at is not None or token.revoked_at is not None
        if spent or not await repo.spend_refresh_token(session, token.id, now):
            family_id, user_id = token.family_id, token.user_id
            on_rollback(session, lambda: self._revoke_family_after_reuse(family_id, user_id))
            raise Unauthorized("This refresh token was already used; its sessions are revoked.")
        user = await session.get(User, token.user_id)
        if user is None or not user.is_active:
            raise Unauthorized("Invalid or expired refresh token.")
        pair = await self._issue(session, user, family_id=token.family_id)
        await audit(
            session, "auth.refresh", _principal(user), resource_type="user", resource_id=user.id
        )
        return pair

    async def _revoke_family_after_reuse(self, family_id: uuid.UUID, user_id: uuid.UUID) -> None:
        async with self.db.transaction() as session:
            await repo.revoke_family(session, family_id, utcnow())
        await audit_failure(
            self.db,
            "auth.refresh_reuse",
            None,
            resource_type="user",
            resource_id=user_id,
            detail={"family": str(family_id)},
        )

    async def logout(
        self, session: AsyncSession, principal: Principal, raw_token: str | None
    ) -> None:
        now = utcnow()
        token = (
            await repo.refresh_token_by_hash(session, sha256_hex(raw_token)) if raw_token else None
        )
        if token is not None and token.user_id == principal.user_id:
            await repo.revoke_family(session, token.family_id, now)
        else:
            await revoke_sessions(session, principal.user_id, self.authenticator)
        await audit(
            session, "auth.logout", principal, resource_type="user", resource_id=principal.user_id
        )

    async def _issue(self, session: AsyncSession, user: User, family_id: uuid.UUID) -> TokenPair:
        now = utcnow()
        raw, digest = generate_refresh_token()
        session.add(
            RefreshToken(
                user_id=user.id,
                family_id=family_id,
                token_hash=digest,
                created_at=now,
                expires_at=now + timedelta(seconds=self.settings.refresh_token_ttl_seconds),
            )
        )
        access = self.tokens.issue(user.id, user.auth_version, now)
        return TokenPair(access=access, refresh=raw, expires_in=self.tokens.ttl_seconds)


async def revoke_sessions(
    session: AsyncSession, user_id: uuid.UUID, authenticator: Authenticator | None
) -> None:
    """Invalidate every access and refresh token of the user (``authenticator``: the
    process's principal cache to clear; None where there is none, as in the command line)."""
    user = await session.get(User, user_id)
    if user is None:
        return
    user.auth_version += 1
    await repo.revoke_user_tokens(session, user_id, utcnow())
    if authenticator is not None:
        authenticator.forget_user(session, user_id)


def _principal(user: User) -> Principal:
    return Principal(user.id, user.username, user.is_admin)
