"""DirectRoute: an endpoint served without dependency solving, still documented."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, Request, Response

from taskgate.http.direct_route import DirectRoute


async def with_query(request: Request, limit: int = 10) -> Response:
    return Response()


def test_an_endpoint_wanting_more_than_the_request_is_refused() -> None:
    router = APIRouter()
    with pytest.raises(TypeError, match="takes the request alone"):
        router.add_api_route("/x", with_query, route_class_override=DirectRoute)
