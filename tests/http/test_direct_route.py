"""DirectRoute: an endpoint served without dependency solving (POST /tasks is one), still
authenticated first, validated and documented like any other."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from taskgate.http.auth import Db, TasksRead, TasksWrite
from taskgate.http.direct_route import DirectRoute
from tests.support.clients import User

TASKS = "/api/v1/tasks"


class Order(BaseModel):
    item: str = Field(min_length=1)
    quantity: int = Field(ge=1)


async def with_query(request: Request, limit: int = 10) -> Response:
    return Response()


async def with_two_bodies(request: Request, first: Order, second: Order) -> Response:
    return Response()


async def with_a_dependency(request: Request, db: Db) -> Response:
    return Response()


async def with_two_callers(request: Request, reader: TasksRead, writer: TasksWrite) -> Response:
    return Response()


@pytest.mark.parametrize(
    "endpoint", [with_query, with_two_bodies, with_a_dependency, with_two_callers]
)
def test_an_endpoint_wanting_more_than_the_request_and_a_body_is_refused(endpoint: Any) -> None:
    router = APIRouter()
    with pytest.raises(TypeError, match="takes the request and at most a JSON body"):
        router.add_api_route("/x", endpoint, methods=["POST"], route_class_override=DirectRoute)


async def test_a_valid_body_reaches_the_endpoint(client: httpx.AsyncClient, admin: User) -> None:
    response = await client.post(TASKS, json={"commands": ["true"]}, headers=admin.headers)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "QUEUED"


async def test_an_invalid_body_is_a_400_naming_each_field(
    client: httpx.AsyncClient, admin: User
) -> None:
    body = {"commands": [], "priority": 99}
    response = await client.post(TASKS, json=body, headers=admin.headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert {d["field"] for d in error["details"]} == {"commands", "priority"}


@pytest.mark.parametrize(
    ("content", "words"),
    [(b"", "Field required"), (b'{"commands": ["true"],', "Malformed JSON: EOF")],
)
async def test_an_empty_or_malformed_body_is_a_400(
    client: httpx.AsyncClient, admin: User, content: bytes, words: str
) -> None:
    headers = admin.headers | {"Content-Type": "application/json"}
    response = await client.post(TASKS, content=content, headers=headers)
    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert details[0]["field"] == "body"
    assert details[0]["message"].startswith(words)


async def test_an_anonymous_caller_hears_401_before_anything_about_the_body(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(TASKS, json={"commands": []})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


async def test_the_body_is_documented(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    body = spec["paths"][TASKS]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TaskCreate"
    }
