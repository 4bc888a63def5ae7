"""The OpenAPI document is true: schemathesis sends every operation generated requests over
real HTTP (a live server on SQLite, signed in as an administrator with an API key) and checks
that no answer is a server error and each one is documented: its status code, content type,
headers, body schema, and the ``Allow`` of a 405.

Operations that would revoke the credentials of the caller (signing out, disabling or
editing users, rotating or deleting API keys) run as an administrator of their own, so the
rest of the run keeps a working key whatever they do."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import schemathesis
from schemathesis import Case
from schemathesis.core.result import Ok

from taskgate.app import create_app
from taskgate.auth.principal import Principal
from taskgate.db.engine import create_engine
from taskgate.db.session import Database
from taskgate.identity import repository
from taskgate.identity.api_key_service import create_api_key
from taskgate.identity.schemas import ApiKeyCreate, UserCreate
from taskgate.identity.user_service import create_user, ensure_first_admin
from taskgate.settings import Settings
from tests.conftest import make_settings
from tests.support.clients import ADMIN_PASSWORD
from tests.support.databases import migrate, sqlite_url
from tests.tasks.live_server import serve_in_thread

T = TypeVar("T")
Operation = schemathesis.APIOperation[Any, Any, Any, Any]

# Generated cases per operation in the fuzzing phase; the examples and coverage phases add
# their own (a few dozen per operation). The whole run stays within about three minutes.
MAX_EXAMPLES = 10
SEED = 20261207
# Operations that can take the caller's own credentials away.
OWN_PRINCIPAL = re.compile(
    r"^(POST /api/v1/auth/logout"
    r"|POST /api/v1/users/\{user_id\}/(disable|revoke-sessions|reset-password)"
    r"|PATCH /api/v1/users/\{user_id\}"
    r"|(DELETE|POST) /api/v1/api-keys/\{key_id\}(/rotate)?)$"
)
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "allow_header_conformance",
)
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "suppress-health-check": ["all"],
        "request-timeout": 10,
        "max-stream-events": 20,
        "generation": {
            "deterministic": True,
            "max-examples": MAX_EXAMPLES,
            "database": "none",
            "no-shrink": True,
        },
        "phases": {"stateful": {"enabled": False}},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
    }
)


@dataclass(frozen=True)
class LiveApi:
    url: str
    key: str
    # The key of the administrator the credential-revoking operations run as.
    spare_key: str

    def headers_for(self, case: Case[Any]) -> dict[str, str]:
        key = self.spare_key if OWN_PRINCIPAL.match(case.operation.label) else self.key
        return {"X-API-Key": key}


def _timeout(case: Case[Any]) -> float:
    """A live event stream never ends: it is read for half a second (or 20 events)."""
    success = case.operation.definition.raw.get("responses", {}).get("200", {})
    return 0.5 if "text/event-stream" in success.get("content", {}) else 10.0


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on a loop of its own (the tests' loop belongs to pytest-asyncio)."""
    results: list[T] = []
    thread = threading.Thread(target=lambda: results.append(asyncio.run(coroutine)))
    thread.start()
    thread.join()
    return results[0]


async def _prepare(settings: Settings) -> tuple[str, str]:
    """Migrate the database; the API keys of the first administrator and of a spare one."""
    db = Database(create_engine(settings))
    try:
        await migrate(db.engine)
        async with db.transaction() as session:
            await ensure_first_admin(session, ADMIN_PASSWORD)
            spare = UserCreate(username="spare-admin", password=ADMIN_PASSWORD, is_admin=True)
            await create_user(session, None, spare)
            keys = []
            for username in ("admin", "spare-admin"):
                user = await repository.user_by_login(session, username)
                assert user is not None
                principal = Principal(user.id, user.username, user.is_admin)
                _, key = await create_api_key(session, principal, ApiKeyCreate(name="openapi"))
                keys.append(key)
    finally:
        await db.dispose()
    return keys[0], keys[1]


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    directory: Path = tmp_path_factory.mktemp("openapi")
    settings = make_settings(sqlite_url(directory), directory)
    key, spare_key = _run(_prepare(settings))
    with serve_in_thread(create_app(settings)) as url:
        yield LiveApi(url, key, spare_key)


@dataclass
class Tally:
    operations: set[str] = field(default_factory=set)
    cases: int = 0
    per_operation: Counter[str] = field(default_factory=Counter)


@pytest.fixture(scope="module")
def tally(api_schema: schemathesis.BaseSchema) -> Iterator[Tally]:
    """Counts what ran; at the end, every operation of the document must have run."""
    counts = Tally()
    started = time.monotonic()
    yield counts
    documented = {operation.label for operation in _operations(api_schema)}
    print(
        f"\nschemathesis: {len(counts.operations)} of {len(documented)} operations, "
        f"{counts.cases} cases in {time.monotonic() - started:.0f} s"
    )
    print("most cases:", counts.per_operation.most_common(5))
    assert counts.operations == documented


def _operations(api_schema: schemathesis.BaseSchema) -> Iterator[Operation]:
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), result
        yield result.ok()


@pytest.fixture(scope="module")
def api_schema(live_api: LiveApi) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(
        f"{live_api.url}/openapi.json", config=CONFIG, wait_for_schema=10
    )


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.timeout(600)
@schema.parametrize()
def test_the_api_answers_as_documented(case: Case[Any], live_api: LiveApi, tally: Tally) -> None:
    tally.operations.add(case.operation.label)
    tally.cases += 1
    tally.per_operation[case.operation.label] += 1
    case.call_and_validate(headers=live_api.headers_for(case), timeout=_timeout(case))
