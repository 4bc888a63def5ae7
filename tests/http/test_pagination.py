"""The paging seam on its own: every form of the query over one real list, on both databases
(the routes exercise it through the API elsewhere)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import pytest
from fastapi import Depends
from sqlalchemy import select
from starlette.requests import Request

from taskgate.db.session import Database
from taskgate.errors import ValidationFailed
from taskgate.http.auth import Session
from taskgate.http.pagination import (
    Listing,
    NumberedPage,
    OffsetParams,
    PageNumberParams,
    PageParams,
    page_number_params,
    paginate,
)
from taskgate.models import User
from tests.conftest import AppFactory

URL = "http://testserver/api/automate/users/?search=pager&page=1"
START = datetime(2024, 5, 1, tzinfo=UTC)


def listing() -> Listing[User]:
    stmt = select(User).where(User.username.like("pager-%"))
    return Listing(stmt, {"created_at": User.created_at}, User.id)


@pytest.fixture
async def users(db: Database) -> list[str]:
    """Seven users, pager-0 the oldest; newest first as the lists answer by default."""
    async with db.transaction() as session:
        for n in range(7):
            session.add(
                User(
                    username=f"pager-{n}",
                    password_hash="x",
                    created_at=START + timedelta(minutes=n),
                    updated_at=START,
                )
            )
    return [f"pager-{n}" for n in reversed(range(7))]


async def pages(db: Database, params: Any) -> tuple[list[str], Any]:
    async with db.transaction(write=False) as session:
        window = await paginate(session, listing(), params)
    return [user.username for user in window.rows], window


async def test_the_page_number_form_answers_count_and_links(db: Database, users: list[str]) -> None:
    names, window = await pages(db, PageNumberParams(page=1, page_size=3, url=URL))
    assert names == users[:3]
    page = window.numbered(names).model_dump()
    assert page == {
        "count": 7,
        "next": "http://testserver/api/automate/users/?search=pager&page=2",
        "previous": None,
        "results": users[:3],
    }

    names, window = await pages(db, PageNumberParams(page=2, page_size=3, url=URL))
    assert names == users[3:6]
    # As Django REST framework links it: the first page is the URL without ``page``.
    assert window.previous == "http://testserver/api/automate/users/?search=pager"
    assert window.next == "http://testserver/api/automate/users/?search=pager&page=3"

    names, window = await pages(db, PageNumberParams(page=3, page_size=3, url=URL))
    assert (names, window.next, window.count) == (users[6:], None, 7)
    assert window.previous == "http://testserver/api/automate/users/?search=pager&page=2"

    names, window = await pages(db, PageNumberParams(page=9, page_size=3, url=URL))
    assert (names, window.next, window.count) == ([], None, 7)


async def test_the_page_number_form_follows_the_ordering(db: Database, users: list[str]) -> None:
    params = PageNumberParams(page=1, page_size=4, url=URL, ordering="created_at")
    names, _ = await pages(db, params)
    assert names == list(reversed(users))[:4]


async def test_the_offset_form_counts_and_skips(db: Database, users: list[str]) -> None:
    names, window = await pages(db, OffsetParams(limit=2, offset=5))
    assert (names, window.count, window.next) == (users[5:], 7, None)


async def test_the_keyset_form_walks_every_row_once(db: Database, users: list[str]) -> None:
    key = b"k" * 32
    seen: list[str] = []
    url: str | None = "/api/v1/users?limit=3"
    cursor = None
    while url is not None:
        names, window = await pages(db, PageParams(3, cursor, True, "-created_at", url, key))
        assert window.count == 7
        seen += names
        url = window.next
        cursor = url.rsplit("cursor=", 1)[1] if url else None
    assert seen == users


def _request(query: str) -> Request:
    scope = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "server": ("testserver", 80),
        "path": "/api/automate/users/",
        "query_string": query.encode(),
        "headers": [(b"host", b"testserver")],
    }
    return Request(scope)


async def test_the_page_number_query_allows_at_most_100_a_page() -> None:
    parse = page_number_params(["-created_at", "created_at"])
    params = await parse(request=_request("page=2"), page=2, page_size=100, ordering="created_at")
    assert params == PageNumberParams(
        2, 100, "http://testserver/api/automate/users/?page=2", "created_at"
    )
    with pytest.raises(ValidationFailed) as refused:
        await parse(request=_request(""), page=1, page_size=101, ordering="-created_at")
    assert refused.value.details[0].field == "page_size"
    with pytest.raises(ValidationFailed) as refused:
        await parse(request=_request(""), page=1, page_size=10, ordering="name")
    assert refused.value.details[0].field == "ordering"


Numbered = Annotated[PageNumberParams, Depends(page_number_params(["-created_at", "created_at"]))]


async def numbered_users(session: Session, page: Numbered) -> NumberedPage[str]:
    window = await paginate(session, listing(), page)
    return window.numbered([user.username for user in window.rows])


async def test_a_route_in_the_page_number_form(app_factory: AppFactory, users: list[str]) -> None:
    async with app_factory() as (app, client):
        app.router.add_api_route("/test/users/", numbered_users, methods=["GET"])
        first = await client.get("/test/users/", params={"page_size": 5})
        assert first.status_code == 200, first.text
        assert first.json() == {
            "count": 7,
            "next": "http://testserver/test/users/?page_size=5&page=2",
            "previous": None,
            "results": users[:5],
        }
        second = (await client.get(first.json()["next"])).json()
        assert second["results"] == users[5:]
        assert second["previous"] == "http://testserver/test/users/?page_size=5"
        for query, field in (("page_size=101", "page_size"), ("page=0", "page")):
            refused = await client.get(f"/test/users/?{query}")
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"]["details"][0]["field"] == field
