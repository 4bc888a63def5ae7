"""Who is calling: resolved from a JWT or an API key, cached briefly, never trusted blindly."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from sqlalchemy import select

from taskgate.db.session import Database
from taskgate.errors import Forbidden, Unauthorized
from taskgate.identity.credentials import AccessTokens, api_key_matches, parse_api_key, sha256_hex
from taskgate.models import ApiKey, User


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    username: str
    is_admin: bool
    scopes: frozenset[str] = field(default_factory=lambda: frozenset({"*"}))
    api_key_id: uuid.UUID | None = None

    @property
    def key(self) -> str:
        """The identity rate limits and idempotency keys are counted against."""
        return f"key:{self.api_key_id}" if self.api_key_id else f"user:{self.user_id}"

    def has_scope(self, scope: str) -> bool:
        if "*" in self.scopes or scope in self.scopes:
            return True
        family = scope.split(":", 1)[0]
        return f"{family}:*" in self.scopes

    def require_scope(self, scope: str) -> None:
        if not self.has_scope(scope):
            raise Forbidden(f"This API key lacks the scope {scope!r}.")

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("Administrators only.")


@dataclass(frozen=True)
class _UserState:
    username: str
    is_admin: bool
    is_active: bool
    auth_version: int


@dataclass(frozen=True)
class _KeyState:
    key_id: uuid.UUID
    user_id: uuid.UUID
    scopes: frozenset[str]
    expires_at: float | None


class Authenticator:
    """Verifies credentials. Verified keys and user states are cached for ``ttl`` seconds;
    this process drops them at once on revoke or disable, other processes within ``ttl``."""

    def __init__(self, db: Database, tokens: AccessTokens, ttl: float) -> None:
        self.db = db
        self.tokens = tokens
        self.ttl = ttl
        self._users: dict[uuid.UUID, tuple[float, _UserState | None]] = {}
        self._keys: dict[str, tuple[float, _KeyState | None]] = {}
        self.key_last_used: dict[uuid.UUID, float] = {}

    def invalidate_user(self, user_id: uuid.UUID) -> None:
        self._users.pop(user_id, None)

    def invalidate_keys(self) -> None:
        self._keys.clear()

    async def resolve(self, credential: str) -> Principal:
        if parse_api_key(credential) is not None:
            return await self._resolve_key(credential)
        claims = self.tokens.verify(credential)
        user = await self._user(claims.user_id)
        if user is None or not user.is_active or user.auth_version != claims.auth_version:
            raise Unauthorized("This session is no longer valid.")
        return Principal(claims.user_id, user.username, user.is_admin)

    async def _resolve_key(self, key: str) -> Principal:
        digest = sha256_hex(key)
        now = time.monotonic()
        cached = self._keys.get(digest)
        if cached is None or cached[0] < now:
            state = await self._load_key(key)
            self._keys[digest] = (now + self.ttl, state)
        else:
            state = cached[1]
        if state is None or (state.expires_at is not None and state.expires_at <= time.time()):
            raise Unauthorized("Invalid or expired API key.")
        user = await self._user(state.user_id)
        if user is None or not user.is_active:
            raise Unauthorized("Invalid or expired API key.")
        self.key_last_used[state.key_id] = time.time()
        return Principal(state.user_id, user.username, user.is_admin, state.scopes, state.key_id)

    async def _load_key(self, key: str) -> _KeyState | None:
        prefix = parse_api_key(key)
        async with self.db.transaction(write=False) as session:
            row = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        if row is None or row.revoked_at is not None or not api_key_matches(key, row.key_hash):
            return None
        expires = row.expires_at.timestamp() if row.expires_at else None
        return _KeyState(row.id, row.user_id, frozenset(row.scopes or ["*"]), expires)

    async def _user(self, user_id: uuid.UUID) -> _UserState | None:
        now = time.monotonic()
        cached = self._users.get(user_id)
        if cached is not None and cached[0] >= now:
            return cached[1]
        async with self.db.transaction(write=False) as session:
            row = await session.get(User, user_id)
        state = (
            _UserState(row.username, row.is_admin, row.is_active, row.auth_version) if row else None
        )
        self._users[user_id] = (now + self.ttl, state)
        return state
