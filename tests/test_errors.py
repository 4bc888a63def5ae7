"""The status → error table: the codes the API promises, used by the handler and the docs."""

from __future__ import annotations

import httpx

from taskgate.errors import BY_STATUS, NotFound, Unauthorized

# API.md, "Conventions": every error code and its status.
PROMISED = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    412: "PRECONDITION_FAILED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "IDEMPOTENCY_KEY_REUSED",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
    # Beyond API.md's list: a full disk under the database or the data directory.
    507: "INSUFFICIENT_STORAGE",
}


def test_the_table_holds_the_promised_codes() -> None:
    assert {status: error.code for status, error in BY_STATUS.items()} == PROMISED
    assert all(error.status == status for status, error in BY_STATUS.items())


async def test_the_document_and_the_handler_read_the_same_table(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    me = spec["paths"]["/api/v1/users/me"]["get"]["responses"]
    assert me["401"]["description"] == Unauthorized.summary
    missing = await client.get("/api/v1/nothing-here")
    assert missing.json()["error"]["code"] == NotFound.code
