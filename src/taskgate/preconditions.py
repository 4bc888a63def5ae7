"""Optimistic concurrency for versioned resources: the ETag names a version, If-Match checks it.

A change sent with ``If-Match`` applies only while the resource is still at a version the
client names (``"3"`` or ``W/"3"``, several separated by commas, or ``*`` for any); otherwise
it is refused with 412, so two editors cannot overwrite each other unseen.
"""

from __future__ import annotations

from taskgate.errors import PreconditionFailed


def etag(version: int) -> str:
    return f'"{version}"'


def check_if_match(if_match: str | None, version: int, resource: str) -> None:
    """Raise ``PreconditionFailed`` unless ``if_match`` is absent or names ``version``."""
    if if_match is None:
        return
    for candidate in (part.strip() for part in if_match.split(",")):
        if candidate == "*" or candidate.removeprefix("W/").strip('"') == str(version):
            return
    raise PreconditionFailed(
        f"The {resource} is at version {version}; reload it and apply your change again."
    )
