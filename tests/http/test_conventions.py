"""The API conventions every endpoint shares: errors, tracing, limits, operations."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import AppFactory
from tests.support.clients import User


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["trace_id"] == response.headers["x-trace-id"]
    assert isinstance(error["message"], str)
    assert error["message"]
    return error  # type: ignore[no-any-return]


async def test_unknown_route_is_404_envelope(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.get("/api/v1/nothing-here"), 404, "NOT_FOUND")


async def test_wrong_method_is_405_envelope(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.delete("/api/v1/auth/login"), 405, "METHOD_NOT_ALLOWED")


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/login", content=b'{"username": ', headers={"content-type": "application/json"}
    )
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert "Malformed JSON" in str(error["message"])


async def test_validation_error_names_fields(client: httpx.AsyncClient, admin: User) -> None:
    response = await client.post(
        "/api/v1/users", json={"username": "", "password": "short"}, headers=admin.headers
    )
    error = assert_envelope(response, 400, "VALIDATION_ERROR")
    fields = {d["field"] for d in error["details"]}  # type: ignore[attr-defined]
    assert {"username", "password"} <= fields


async def test_wrong_content_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/login", content=b"username=a", headers={"content-type": "text/plain"}
    )
    assert_envelope(response, 415, "UNSUPPORTED_MEDIA_TYPE")


async def test_body_over_limit_is_413_by_header(app_factory: AppFactory) -> None:
    async with app_factory(http={"max_body_bytes": 2048}) as (_, client):
        response = await client.post("/api/v1/auth/login", json={"password": "x" * 5000})
        assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")


async def test_body_over_limit_is_413_while_streaming(app_factory: AppFactory) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1024

    async with app_factory(http={"max_body_bytes": 2048}) as (_, client):
        response = await client.post(
            "/api/v1/auth/login", content=chunks(), headers={"content-type": "application/json"}
        )
        assert "content-length" not in response.request.headers
        assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")


async def test_missing_credentials_is_401_with_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/users/me")
    assert_envelope(response, 401, "UNAUTHORIZED")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_non_admin_is_403(client: httpx.AsyncClient, admin: User) -> None:
    from tests.support.clients import create_user

    user = await create_user(client, admin, "plain")
    assert_envelope(await client.get("/api/v1/users", headers=user.headers), 403, "FORBIDDEN")


async def test_trace_id_is_taken_from_request(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Trace-ID": "abc-123"})
    assert response.headers["x-trace-id"] == "abc-123"
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = await client.get("/api/v1/missing", headers={"traceparent": parent})
    assert response.json()["error"]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"


async def test_unhandled_error_is_500_envelope_without_trace(app_factory: AppFactory) -> None:
    async with app_factory() as (app, client):

        @app.get("/boom")
        async def boom() -> None:
            raise RuntimeError("secret internals")

        response = await client.get("/boom")
        error = assert_envelope(response, 500, "INTERNAL_ERROR")
        assert "secret internals" not in response.text
        assert error["details"] == []


async def test_operations_endpoints(client: httpx.AsyncClient, admin: User) -> None:
    assert (await client.get("/health")).json()["status"] == "ok"
    ready = await client.get("/readiness")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert (await client.get("/metrics")).status_code == 401  # see tests/http/test_metrics.py
    spec = (await client.get("/openapi.json")).json()
    assert "/api/v1/users/me" in spec["paths"]
    assert (await client.get("/docs")).status_code == 200
    assert (await client.get("/redoc")).status_code == 200
    caps = (await client.get("/api/v1/capabilities", headers=admin.headers)).json()
    assert caps["database"] in ("sqlite", "postgresql")


async def test_security_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"


async def test_cors_closed_by_default_and_configurable(app_factory: AppFactory) -> None:
    origin = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
    async with app_factory() as (_, client):
        response = await client.options("/api/v1/users/me", headers=origin)
        assert "access-control-allow-origin" not in response.headers
    async with app_factory(http={"cors_origins": ["https://app.example"]}) as (_, client):
        response = await client.options("/api/v1/users/me", headers=origin)
        assert response.headers["access-control-allow-origin"] == "https://app.example"


@pytest.mark.parametrize("limit", ["0", "101", "abc"])
async def test_page_limit_out_of_range_is_400(
    client: httpx.AsyncClient, admin: User, limit: str
) -> None:
    response = await client.get(f"/api/v1/users?limit={limit}", headers=admin.headers)
    assert_envelope(response, 400, "VALIDATION_ERROR")


async def test_pagination_walks_every_item_once(client: httpx.AsyncClient, admin: User) -> None:
    from tests.support.clients import create_user

    for i in range(5):
        await create_user(client, admin, f"user{i}")
    seen: list[str] = []
    url: str | None = "/api/v1/users?limit=2&ordering=username&count=true"
    counts = set()
    while url:
        page = (await client.get(url, headers=admin.headers)).json()
        seen.extend(u["username"] for u in page["results"])
        counts.add(page["count"])
        url = page["next"]
    assert seen == sorted(["admin", *[f"user{i}" for i in range(5)]])
    assert counts == {6}


async def test_tampered_cursor_and_bad_ordering_are_400(
    client: httpx.AsyncClient, admin: User
) -> None:
    from tests.support.clients import create_user

    await create_user(client, admin, "other")
    page = (await client.get("/api/v1/users?limit=1", headers=admin.headers)).json()
    cursor = page["next"].split("cursor=")[1]
    tampered = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]
    response = await client.get(f"/api/v1/users?limit=1&cursor={tampered}", headers=admin.headers)
    assert_envelope(response, 400, "VALIDATION_ERROR")
    response = await client.get("/api/v1/users?ordering=password_hash", headers=admin.headers)
    assert_envelope(response, 400, "VALIDATION_ERROR")
