"""Who is calling: resolved from a JWT or an API key, cached briefly, never trusted blindly."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.auth.credentials import AccessTokens, api_key_matches, parse_api_key, sha256_hex
from taskgate.db.session import Database, on_commit
from taskgate.errors import Forbidden, Unauthorized
from taskgate.models import ApiKey, Project, User


class Grants(Protocol):
    """What a user's role bindings and access rules grant, as the principal carries them.
    Governance builds them (taskgate.governance.grants) and decides with them
    (taskgate.governance.access); the app hands the loader to the ``Authenticator``."""

    @property
    def is_admin(self) -> bool:
        """The instance administrator."""
        ...

    @property
    def disabled_projects(self) -> frozenset[uuid.UUID]: ...

    def subject(self, project_id: uuid.UUID | None) -> dict[str, Any]:
        """The effective subject audit records carry, in a project or (None) at system
        scope."""
        ...


# Loads a user's grants in the given read transaction.
GrantsLoader = Callable[[AsyncSession, uuid.UUID], Awaitable[Grants]]


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    username: str
    is_admin: bool
    scopes: frozenset[str] = field(default_factory=lambda: frozenset({"*"}))
    api_key_id: uuid.UUID | None = None
    # The project this request works in (see taskgate.governance.selection): the user's
    # default project unless the request names another it may see.
    project_id: uuid.UUID | None = None
    project_active: bool = True
    default_project_id: uuid.UUID | None = None
    # What the user's role bindings and access rules grant (taskgate.governance.grants);
    # None for a principal the runtime builds by hand (see taskgate.governance.access).
    grants: Grants | None = None
    # The one project an API key is restricted to, if it is.
    key_project_id: uuid.UUID | None = None

    @functools.cached_property
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
        """An instance-wide action: an administrator's, not through a key kept to a project."""
        if not self.is_admin:
            raise Forbidden("Administrators only.")
        if self.key_project_id is not None:
            raise Forbidden("An API key restricted to one project cannot act instance-wide.")

    def subject_in(self, project_id: uuid.UUID | None) -> dict[str, Any] | None:
        """The effective subject audit records carry: ``user_id, group_ids, role_names,
        scope`` in ``project_id`` (None: at system scope)."""
        if self.grants is None:
            return None
        return self.grants.subject(project_id)


@dataclass(frozen=True)
class UserProfile:
    """What a request needs to know about its user, cached alongside the credential check."""

    id: uuid.UUID
    username: str
    email: str | None
    is_admin: bool
    is_active: bool
    timezone: str
    auth_version: int
    created_at: datetime
    last_login_at: datetime | None
    default_project_id: uuid.UUID | None = None
    default_project_active: bool = True
    grants: Grants | None = None


@dataclass(frozen=True)
class _KeyState:
    key_id: uuid.UUID
    user_id: uuid.UUID
    scopes: frozenset[str]
    expires_at: float | None
    project_id: uuid.UUID | None = None


K = TypeVar("K")
V = TypeVar("V")
INVALID_API_KEY = "Invalid or expired API key."
_MAX_ENTRIES = 10_000
# A credential still in use this far (a share of the ttl) from its expiry is re-read ahead.
_REFRESH_AHEAD = 0.25
log = structlog.get_logger()


class TTLCache(Generic[K, V]):
    """Loads each key once however many requests miss it together, and never keeps an answer
    loaded across an invalidation (a load that raced a revoke must not resurrect the key)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Future[V]] = {}
        self._generation = 0

    def invalidate(self, key: K | None = None) -> None:
        self._generation += 1
        if key is None:
            self._entries.clear()
        else:
            self._entries.pop(key, None)

    async def get(self, key: K, load: Callable[[], Awaitable[V]], *, reload: bool = False) -> V:
        """The cached value, else (or with ``reload``) a fresh one from ``load``."""
        now = time.monotonic()
        cached = self._entries.get(key)
        if cached is not None and cached[0] >= now and not reload:
            return cached[1]
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        generation = self._generation
        try:
            value = await load()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so a miss nobody shared is not logged
            raise
        else:
            future.set_result(value)
        finally:
            del self._loading[key]
        if generation == self._generation and self.ttl > 0:
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries = {k: e for k, e in self._entries.items() if e[0] >= now}
                if len(self._entries) >= _MAX_ENTRIES:
                    self._entries.clear()
            self._entries[key] = (now + self.ttl, value)
        return value


class Authenticator:
    """Verifies credentials. Verified keys and user profiles are cached for ``ttl`` seconds;
    this process drops them at once on revoke or disable, other processes within ``ttl``."""

    def __init__(
        self, db: Database, tokens: AccessTokens, ttl: float, *, load_grants: GrantsLoader
    ) -> None:
        self.db = db
        self.tokens = tokens
        self.ttl = ttl
        self.load_grants = load_grants
        self._users: TTLCache[uuid.UUID, UserProfile | None] = TTLCache(ttl)
        self._keys: TTLCache[str, _KeyState | None] = TTLCache(ttl)
        # The answer per credential digest, so a repeat caller costs one look-up (no JWT
        # decoding, no joining key and user): (fresh until, generation, principal, expiry).
        self._resolved: dict[str, tuple[float, int, Principal, float | None]] = {}
        self._generation = 0
        # Credentials (by digest) whose answer is being re-read ahead of its expiry.
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self._refresh_margin = ttl * _REFRESH_AHEAD
        self.key_last_used: dict[uuid.UUID, float] = {}

    def invalidate_user(self, user_id: uuid.UUID) -> None:
        self._generation += 1
        self._users.invalidate(user_id)

    def invalidate_all(self) -> None:
        """Forget every user and key (a project they work in changed)."""
        self.invalidate_keys()
        self._users.invalidate()

    def forget_all(self, session: AsyncSession) -> None:
        self.invalidate_all()

        async def again() -> None:
            self.invalidate_all()

        on_commit(session, again)

    def invalidate_keys(self) -> None:
        self._generation += 1
        self._keys.invalidate()

    def forget_user(self, session: AsyncSession, user_id: uuid.UUID) -> None:
        """Drop the cached user now and again once ``session`` commits, so no request in
        between caches the state the transaction is about to replace."""
        self.invalidate_user(user_id)

        async def again() -> None:
            self.invalidate_user(user_id)

        on_commit(session, again)

    def forget_keys(self, session: AsyncSession) -> None:
        self.invalidate_keys()

        async def again() -> None:
            self.invalidate_keys()

        on_commit(session, again)

    async def resolve(self, credential: str) -> Principal:
        digest = sha256_hex(credential)
        cached = self._resolved.get(digest)
        if cached is not None:
            fresh_until, generation, principal, expires_at = cached
            now = time.monotonic()
            if (
                generation == self._generation
                and fresh_until >= now
                and (expires_at is None or expires_at > time.time())
            ):
                if principal.api_key_id is not None:
                    self.key_last_used[principal.api_key_id] = time.time()
                if now >= fresh_until - self._refresh_margin and digest not in self._refreshing:
                    self._refresh(credential, digest)
                return principal
        return await self._verify(credential, digest)

    async def _verify(self, credential: str, digest: str, *, reload: bool = False) -> Principal:
        generation = self._generation
        started = time.monotonic()
        if parse_api_key(credential) is not None:
            principal, expires_at = await self._resolve_key(credential, digest, reload)
        else:
            principal, expires_at = await self._resolve_token(credential, reload)
        if generation == self._generation and self.ttl > 0:
            if len(self._resolved) >= _MAX_ENTRIES:
                self._resolved.clear()
            self._resolved[digest] = (started + self.ttl, generation, principal, expires_at)
        return principal

    def _refresh(self, credential: str, digest: str) -> None:
        """Re-read a busy credential in the background shortly before its answer expires, so
        its callers never wait on the database together (which every ``ttl`` seconds set the
        tail latency); until the answer expires it stands as before, so a change made in
        another process still takes effect within ``ttl``."""

        async def refresh() -> None:
            try:
                await self._verify(credential, digest, reload=True)
            except Unauthorized:
                self._resolved.pop(digest, None)  # the next request is refused as it asks
            except Exception:
                log.warning("credential_refresh_failed", exc_info=True)
            finally:
                del self._refreshing[digest]

        self._refreshing[digest] = asyncio.create_task(refresh(), name="taskgate-credential")

    async def close(self) -> None:
        """Stop refreshes still running (before the database they read is disposed)."""
        tasks = list(self._refreshing.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _resolve_token(self, token: str, reload: bool) -> tuple[Principal, float]:
        claims = self.tokens.verify(token)
        user = await self.profile(claims.user_id, reload=reload)
        if user is None or not user.is_active or user.auth_version != claims.auth_version:
            raise Unauthorized("This session is no longer valid.")
        return principal_of(user), claims.expires_at

    async def profile(self, user_id: uuid.UUID, *, reload: bool = False) -> UserProfile | None:
        return await self._users.get(user_id, lambda: self._load_user(user_id), reload=reload)

    async def _resolve_key(
        self, key: str, digest: str, reload: bool
    ) -> tuple[Principal, float | None]:
        state = await self._keys.get(digest, lambda: self._load_key(key), reload=reload)
        if state is None or (state.expires_at is not None and state.expires_at <= time.time()):
            raise Unauthorized(INVALID_API_KEY)
        user = await self.profile(state.user_id, reload=reload)
        if user is None or not user.is_active:
            raise Unauthorized(INVALID_API_KEY)
        self.key_last_used[state.key_id] = time.time()
        principal = principal_of(user, state.scopes, state.key_id, state.project_id)
        return principal, state.expires_at

    async def _load_key(self, key: str) -> _KeyState | None:
        prefix = parse_api_key(key)
        async with self.db.transaction(write=False) as session:
            row = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        if row is None or row.revoked_at is not None or not api_key_matches(key, row.key_hash):
            return None
        expires = row.expires_at.timestamp() if row.expires_at else None
        scopes = frozenset(row.scopes or ["*"])
        return _KeyState(row.id, row.user_id, scopes, expires, row.project_id)

    async def _load_user(self, user_id: uuid.UUID) -> UserProfile | None:
        # The user and its default project in one round trip.
        query = (
            select(User, Project.id, Project.status)
            .outerjoin(Project, (Project.created_by == User.id) & Project.is_default)
            .where(User.id == user_id)
        )
        async with self.db.transaction(write=False) as session:
            found = (await session.execute(query)).first()
            if found is None:
                return None
            grants = await self.load_grants(session, user_id)
        row, project_id, project_status = found
        return UserProfile(
            id=row.id,
            username=row.username,
            email=row.email,
            is_admin=row.is_admin,
            is_active=row.is_active,
            timezone=row.timezone,
            auth_version=row.auth_version,
            created_at=row.created_at,
            last_login_at=row.last_login_at,
            default_project_id=project_id,
            default_project_active=project_status != "disabled",
            grants=grants,
        )


def principal_of(
    user: UserProfile,
    scopes: frozenset[str] = frozenset({"*"}),
    api_key_id: uuid.UUID | None = None,
    key_project_id: uuid.UUID | None = None,
) -> Principal:
    """The user's principal in its default project, or in the one project its API key is
    restricted to; an instance administrator by its system-scope ``admin`` binding."""
    grants = user.grants
    project_id, active = user.default_project_id, user.default_project_active
    if key_project_id is not None:
        project_id = key_project_id
        active = grants is None or key_project_id not in grants.disabled_projects
    return Principal(
        user.id,
        user.username,
        grants.is_admin if grants is not None else user.is_admin,
        scopes,
        api_key_id,
        project_id=project_id,
        project_active=active,
        default_project_id=user.default_project_id,
        grants=grants,
        key_project_id=key_project_id,
    )
