"""Identity routes: sign-in, the current principal, users and API keys."""

from __future__ import annotations

import functools
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from taskgate.auth.principal import Authenticator, Principal, UserProfile
from taskgate.errors import Unauthorized
from taskgate.governance.access import effective_permissions, sees
from taskgate.governance.grants import grants_of
from taskgate.http.auth import (
    ApiKeysRead,
    ApiKeysWrite,
    CurrentPrincipal,
    Session,
    UsersRead,
    UsersWrite,
    get_principal,
)
from taskgate.http.context import current_client_ip
from taskgate.http.direct_route import DirectRoute
from taskgate.http.json_body import JsonRoute
from taskgate.http.pagination import Page, PageParams, page_params
from taskgate.identity import api_key_service, user_service
from taskgate.identity.auth_service import AuthService
from taskgate.identity.schemas import (
    ActionResult,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    GroupRefOut,
    LoginRequest,
    LogoutRequest,
    MeOut,
    PasswordReset,
    ProjectGrantsOut,
    RefreshRequest,
    SystemGrantsOut,
    TokenPair,
    UserCreate,
    UserFilters,
    UserOut,
    UserUpdate,
)
from taskgate.openapi import errors

router = APIRouter(prefix="/api/v1", route_class=JsonRoute)


async def _auth_service(request: Request) -> AuthService:
    state = request.app.state
    return AuthService(
        state.db, state.tokens, state.authenticator, state.limiter, state.settings.auth
    )


async def _authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator


Auth = Annotated[AuthService, Depends(_auth_service)]
Authn = Annotated[Authenticator, Depends(_authenticator)]


async def me(request: Request) -> Response:
    # The hottest authenticated read, so it is a DirectRoute (no dependency solving, the body
    # rendered here rather than validated again against MeOut) and asks for the principal
    # itself.
    principal = await get_principal(request)
    # The profile verified with the credential: no database round trip on this hot path.
    authenticator: Authenticator = request.app.state.authenticator
    user = await authenticator.profile(principal.user_id)
    if user is None:
        raise Unauthorized()
    return Response(_me_json(principal, user), media_type="application/json")


# The first route of the router: every request to it is matched against the routes before it.
router.add_api_route(
    "/users/me",
    me,
    methods=["GET"],
    tags=["users"],
    response_model=MeOut,
    responses=errors(401),
    route_class_override=DirectRoute,
)


@functools.lru_cache(maxsize=1024)
def _me_json(principal: Principal, user: UserProfile) -> bytes:
    """Keyed by value (both are frozen), so a changed user or key renders anew; a caller who
    asks again within the cache lifetime costs a look-up instead of two validations (~12 us)."""
    grants = grants_of(principal)
    groups = (
        [GroupRefOut(id=g.id, slug=g.slug, name=g.name) for g in grants.groups] if grants else []
    )
    system_roles = sorted(grants.system_roles) if grants else []
    projects = []
    for project_id in _projects_shown(principal):
        permissions, owned = effective_permissions(principal, project_id)
        roles = sorted(grants.roles_in(project_id)) if grants else []
        projects.append(
            ProjectGrantsOut(
                project_id=project_id,
                roles=roles,
                permissions=permissions,
                owned_permissions=owned,
            )
        )
    body = MeOut(
        user=UserOut.model_validate(user),
        roles=["admin", "user"] if principal.is_admin else ["user"],
        scopes=sorted(principal.scopes),
        auth="api_key" if principal.api_key_id else "token",
        api_key_id=principal.api_key_id,
        default_project_id=user.default_project_id,
        project_id=principal.project_id,
        key_project_id=principal.key_project_id,
        groups=groups,
        system=SystemGrantsOut(
            roles=system_roles,
            permissions=effective_permissions(principal, None)[0] if system_roles else [],
        ),
        projects=projects,
    )
    return body.model_dump_json().encode()


def _projects_shown(principal: Principal) -> list[uuid.UUID]:
    """The projects the caller holds a role in, and the request's, that it sees."""
    grants = grants_of(principal)
    found = list(grants.project_roles) if grants else []
    if principal.project_id is not None and principal.project_id not in found:
        found.append(principal.project_id)
    return sorted((p for p in found if sees(principal, p)), key=str)


@router.post("/auth/login", tags=["auth"], responses=errors(400, 401, 429))
async def login(body: LoginRequest, session: Session, auth: Auth) -> TokenPair:
    return await auth.login(session, body, current_client_ip() or "unknown")


@router.post(
    "/auth/token", tags=["auth"], responses=errors(400, 401, 429), summary="Login (compat body)"
)
async def token(body: LoginRequest, session: Session, auth: Auth) -> TokenPair:
    return await auth.login(session, body, current_client_ip() or "unknown")


@router.post("/auth/refresh", tags=["auth"], responses=errors(400, 401))
async def refresh(body: RefreshRequest, session: Session, auth: Auth) -> TokenPair:
    return await auth.refresh(session, body.refresh)


@router.post("/auth/logout", tags=["auth"], responses=errors(401))
async def logout(
    session: Session, principal: CurrentPrincipal, auth: Auth, body: LogoutRequest | None = None
) -> ActionResult:
    await auth.logout(session, principal, body.refresh if body else None)
    return ActionResult(message="Signed out.")


UserPage = Annotated[
    PageParams, Depends(page_params(["created_at", "-created_at", "username", "-username"]))
]


@router.get("/users", tags=["users"], responses=errors(400, 401, 403))
async def list_users(
    session: Session,
    principal: UsersRead,
    page: UserPage,
    search: str | None = None,
    is_active: bool | None = None,
) -> Page[UserOut]:
    filters = UserFilters(search=search, is_active=is_active)
    return await user_service.list_users(session, principal, filters, page)


@router.post(
    "/users",
    tags=["users"],
    status_code=status.HTTP_201_CREATED,
    responses=errors(400, 401, 403, 409),
)
async def create_user(
    body: UserCreate, session: Session, principal: UsersWrite, response: Response
) -> UserOut:
    user = await user_service.create_user(session, principal, body)
    response.headers["Location"] = f"/api/v1/users/{user.id}"
    return UserOut.model_validate(user)


@router.get("/users/{user_id}", tags=["users"], responses=errors(401, 403, 404))
async def get_user(user_id: uuid.UUID, session: Session, principal: UsersRead) -> UserOut:
    return UserOut.model_validate(await user_service.get_user(session, principal, user_id))


@router.patch("/users/{user_id}", tags=["users"], responses=errors(400, 401, 403, 404, 409))
async def update_user(
    user_id: uuid.UUID,
    body: UserUpdate,
    session: Session,
    principal: UsersWrite,
    authn: Authn,
) -> UserOut:
    user = await user_service.update_user(session, principal, user_id, body, authn)
    return UserOut.model_validate(user)


@router.post("/users/{user_id}/disable", tags=["users"], responses=errors(401, 403, 404, 409))
async def disable_user(
    user_id: uuid.UUID, session: Session, principal: UsersWrite, authn: Authn
) -> UserOut:
    user = await user_service.set_active(session, principal, user_id, False, authn)
    return UserOut.model_validate(user)


@router.post("/users/{user_id}/enable", tags=["users"], responses=errors(401, 403, 404))
async def enable_user(
    user_id: uuid.UUID, session: Session, principal: UsersWrite, authn: Authn
) -> UserOut:
    user = await user_service.set_active(session, principal, user_id, True, authn)
    return UserOut.model_validate(user)


@router.post("/users/{user_id}/revoke-sessions", tags=["users"], responses=errors(401, 403, 404))
async def revoke_user_sessions(
    user_id: uuid.UUID, session: Session, principal: UsersWrite, authn: Authn
) -> ActionResult:
    await user_service.admin_revoke_sessions(session, principal, user_id, authn)
    return ActionResult(message="All sessions of the user are revoked.")


@router.post(
    "/users/{user_id}/reset-password", tags=["users"], responses=errors(400, 401, 403, 404)
)
async def reset_user_password(
    user_id: uuid.UUID,
    body: PasswordReset,
    session: Session,
    principal: UsersWrite,
    authn: Authn,
) -> ActionResult:
    await user_service.reset_password(session, principal, user_id, body.password, authn)
    return ActionResult(message="Password reset; existing sessions are revoked.")


KeyPage = Annotated[PageParams, Depends(page_params(["created_at", "-created_at"]))]


@router.get("/api-keys", tags=["api-keys"], responses=errors(400, 401))
async def list_api_keys(session: Session, principal: ApiKeysRead, page: KeyPage) -> Page[ApiKeyOut]:
    return await api_key_service.list_api_keys(session, principal, page)


@router.post(
    "/api-keys", tags=["api-keys"], status_code=status.HTTP_201_CREATED, responses=errors(400, 401)
)
async def create_api_key(
    body: ApiKeyCreate, session: Session, principal: ApiKeysWrite, response: Response
) -> ApiKeyCreated:
    key, secret = await api_key_service.create_api_key(session, principal, body)
    response.headers["Location"] = f"/api/v1/api-keys/{key.id}"
    return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), key=secret)


@router.get("/api-keys/{key_id}", tags=["api-keys"], responses=errors(401, 404))
async def get_api_key(key_id: uuid.UUID, session: Session, principal: ApiKeysRead) -> ApiKeyOut:
    return ApiKeyOut.model_validate(await api_key_service.get_api_key(session, principal, key_id))


@router.delete(
    "/api-keys/{key_id}",
    tags=["api-keys"],
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(401, 404),
)
async def revoke_api_key(
    key_id: uuid.UUID, session: Session, principal: ApiKeysWrite, authn: Authn
) -> None:
    await api_key_service.revoke_api_key(session, principal, key_id, authn)


@router.post("/api-keys/{key_id}/rotate", tags=["api-keys"], responses=errors(401, 404))
async def rotate_api_key(
    key_id: uuid.UUID, session: Session, principal: ApiKeysWrite, authn: Authn
) -> ApiKeyCreated:
    key, secret = await api_key_service.rotate_api_key(session, principal, key_id, authn)
    return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), key=secret)
