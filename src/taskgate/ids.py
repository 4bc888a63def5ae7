"""Identifiers: UUIDv7 primary keys."""

from __future__ import annotations

import uuid

import uuid_utils


def new_id() -> uuid.UUID:
    """A time-ordered UUIDv7, so primary keys index in insertion order."""
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)
