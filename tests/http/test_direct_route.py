"""DirectRoute: an endpoint served without dependency solving, still documented."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel, Field

from taskgate.http.direct_route import DirectRoute
from taskgate.http.errors import install_error_handlers


class Order(BaseModel):
    item: str = Field(min_length=1)
    quantity: int = Field(ge=1)


async def with_query(request: Request, limit: int = 10) -> Response:
    return Response()


async def with_two_bodies(request: Request, first: Order, second: Order) -> Response:
    return Response()


async def place(request: Request, order: Order) -> Response:
    echoed = f"{request.method} {order.item} x{order.quantity}"
    return Response(echoed, status_code=201)


@pytest.mark.parametrize("endpoint", [with_query, with_two_bodies])
def test_an_endpoint_wanting_more_than_the_request_and_a_body_is_refused(endpoint: Any) -> None:
    router = APIRouter()
    with pytest.raises(TypeError, match="takes the request and at most a JSON body"):
        router.add_api_route("/x", endpoint, methods=["POST"], route_class_override=DirectRoute)


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = FastAPI()
    install_error_handlers(app)
    app.router.add_api_route("/orders", place, methods=["POST"], route_class_override=DirectRoute)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_a_valid_body_reaches_the_endpoint_as_its_model(client: httpx.AsyncClient) -> None:
    response = await client.post("/orders", json={"item": "tea", "quantity": 2})
    assert response.status_code == 201
    assert response.text == "POST tea x2"


async def test_an_invalid_body_is_a_400_naming_each_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/orders", json={"item": "", "quantity": 0})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert {d["field"] for d in error["details"]} == {"item", "quantity"}


@pytest.mark.parametrize(
    ("content", "field", "words"),
    [(b"", "body", "Field required"), (b'{"item": "tea",', "body", "Malformed JSON: EOF")],
)
async def test_an_empty_or_malformed_body_is_a_400(
    client: httpx.AsyncClient, content: bytes, field: str, words: str
) -> None:
    headers = {"Content-Type": "application/json"}
    response = await client.post("/orders", content=content, headers=headers)
    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert details[0]["field"] == field
    assert details[0]["message"].startswith(words)


def test_the_body_is_documented() -> None:
    app = FastAPI()
    app.router.add_api_route("/orders", place, methods=["POST"], route_class_override=DirectRoute)
    body = app.openapi()["paths"]["/orders"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Order"}
