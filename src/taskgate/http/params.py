"""Integers and instants taken from requests, bounded to what the database can compare.

A value past a column's range is not "no match": SQLite refuses to bind an integer beyond 64
bits and PostgreSQL one beyond its column type, so an unbounded ``int`` parameter turns
``?offset=99999999999999999999`` into a 500. These types refuse it as a 400 naming the
parameter, and say the range in the OpenAPI document. Likewise an instant whose UTC time
falls outside the years 1 to 9999 (``0001-01-01T00:00:00+14:00``) cannot be stored or compared.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, Field

INT32_MAX = 2**31 - 1  # INTEGER on PostgreSQL
INT64_MAX = 2**63 - 1  # INTEGER on SQLite, BIGINT on PostgreSQL
MAX_PAGE_SIZE = 100

# Event ids and row offsets (BIGINT, or the OFFSET of a query).
Position = Annotated[int, Field(ge=0, le=INT64_MAX)]
# Versions of a resource (INTEGER columns).
VersionNumber = Annotated[int, Field(ge=1, le=INT32_MAX)]
# A page of page-number pagination: its offset, (page - 1) * size, must fit in 64 bits too.
PageNumber = Annotated[int, Field(ge=1, le=INT64_MAX // MAX_PAGE_SIZE)]


def _in_utc(value: datetime) -> datetime:
    """``value`` in UTC, a naive one read as UTC already (as the API documents)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must fall within the years 1 to 9999 in UTC") from None


# A point in time, aware and in UTC; a naive one is taken as UTC.
Instant = Annotated[datetime, AfterValidator(_in_utc)]
