"""Every router the gateway serves, in one list."""

from __future__ import annotations

from fastapi import APIRouter

from taskgate.ops.endpoints import router as ops_router


def routers() -> list[APIRouter]:
    from taskgate.audit.endpoints import router as audit_router
    from taskgate.identity.endpoints import router as identity_router

    return [ops_router, identity_router, audit_router]
