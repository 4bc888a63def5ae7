"""Verified credentials are cached briefly: busy ones are read again ahead of expiry, and a
change made by another process still takes effect within the cache lifetime."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from sqlalchemy import update

from taskgate.auth.principal import Authenticator, _KeyState
from taskgate.clock import utcnow
from taskgate.models import ApiKey
from tests.conftest import AppFactory
from tests.identity.api import create_key, first_admin, me_status
from tests.support.clients import ADMIN_PASSWORD, login


def key_header(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


async def test_a_busy_key_is_read_again_while_callers_use_the_cache(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    ttl = 4.0
    async with app_factory(auth={"principal_cache_seconds": ttl}) as (app, client):
        await first_admin(app)
        admin = await login(client, "admin", ADMIN_PASSWORD)
        key = (await create_key(client, admin.headers))["key"]
        assert await me_status(client, key_header(key)) == 200
        verified_at = time.monotonic()
        authenticator: Authenticator = app.state.authenticator
        load_key = authenticator._load_key
        gate = asyncio.Event()
        reads = 0

        async def gated_load(key: str) -> _KeyState | None:
            nonlocal reads
            reads += 1
            await gate.wait()
            return await load_key(key)

        monkeypatch.setattr(authenticator, "_load_key", gated_load)
        # Time passing is the point here: into the last quarter of the answer's lifetime.
        await asyncio.sleep(verified_at + ttl * 0.8 - time.monotonic())
        for _ in range(3):
            # The database read hangs on the gate; the callers are answered all the same.
            assert await asyncio.wait_for(me_status(client, key_header(key)), 1) == 200
        assert reads == 1
        gate.set()


async def test_a_key_revoked_elsewhere_stops_working_while_in_use(app_factory: AppFactory) -> None:
    ttl = 0.5
    async with app_factory(auth={"principal_cache_seconds": ttl}) as (app, client):
        await first_admin(app)
        admin = await login(client, "admin", ADMIN_PASSWORD)
        created = await create_key(client, admin.headers)
        assert await me_status(client, key_header(created["key"])) == 200
        # As another replica would: straight in the database, no local invalidation.
        async with app.state.db.transaction() as session:
            await session.execute(
                update(ApiKey)
                .where(ApiKey.id == uuid.UUID(created["id"]))
                .values(revoked_at=utcnow())
            )
        revoked_at = time.monotonic()
        # Asked without pause, so refreshes ahead of expiry are what keeps it cached.
        while await me_status(client, key_header(created["key"])) == 200:
            assert time.monotonic() - revoked_at < ttl * 4, "the revoked key kept working"
        assert await me_status(client, key_header(created["key"])) == 401
