"""Integers taken from the query or the path, bounded to what the database can compare.

A value past a column's range is not "no match": SQLite refuses to bind an integer beyond 64
bits and PostgreSQL one beyond its column type, so an unbounded ``int`` parameter turns
``?offset=99999999999999999999`` into a 500. These types refuse it as a 400 naming the
parameter, and say the range in the OpenAPI document.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

INT32_MAX = 2**31 - 1  # INTEGER on PostgreSQL
INT64_MAX = 2**63 - 1  # INTEGER on SQLite, BIGINT on PostgreSQL
MAX_PAGE_SIZE = 100

# Event ids and row offsets (BIGINT, or the OFFSET of a query).
Position = Annotated[int, Field(ge=0, le=INT64_MAX)]
# Versions of a resource (INTEGER columns).
VersionNumber = Annotated[int, Field(ge=1, le=INT32_MAX)]
# A page of page-number pagination: its offset, (page - 1) * size, must fit in 64 bits too.
PageNumber = Annotated[int, Field(ge=1, le=INT64_MAX // MAX_PAGE_SIZE)]
