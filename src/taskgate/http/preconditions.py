"""HTTP preconditions: the ``ETag`` names a resource's version, ``If-Match`` names the versions
a change was made against (``"3"`` or ``W/"3"``, several separated by commas, or ``*`` for any).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header

from taskgate.versioning import ExpectedVersion


def etag(version: int) -> str:
    return f'"{version}"'


def parse_if_match(header: str | None) -> ExpectedVersion | None:
    """The versions an ``If-Match`` header names, or ``None`` when it is absent."""
    if header is None:
        return None
    versions = set()
    for candidate in (part.strip() for part in header.split(",")):
        if candidate == "*":
            return ExpectedVersion(None)
        versions.add(candidate.removeprefix("W/").strip('"'))
    return ExpectedVersion(frozenset(versions))


async def _if_match(
    if_match: Annotated[
        str | None, Header(description="The ETag you read; a stale one is refused with 412.")
    ] = None,
) -> ExpectedVersion | None:
    return parse_if_match(if_match)


IfMatch = Annotated[ExpectedVersion | None, Depends(_if_match)]
